"""The real training loader against the GPU for scripts/bench_gpu.py (section `loader`).

`data=voc data.root=<voc_mini>` (absent: bench_common.voc_tree's synthetic ~500x375 JPEGs) as
fcn-train builds it (decode, random scale 0.5-2, 320x480 crop, flip, normalise; batch 32;
pinned memory beside a GPU), its train ids repeated so an epoch keeps every worker busy.
Measured with 1 worker (the cost per core) and with one worker per core of this machine;
`loader_to_gpu_train_ratio` divides the latter by the GPU's best FCN-32s/ResNet-18 training
rate: under 1 the GPU waits for data, and 1.5 leaves headroom.
The 16-core figure is the 1-worker rate x 15 (one core left to the training process).
Both with TrainTransform in the workers and with data.gpu_augment=true (workers decode and
draw; `device_side_images_per_s` is what the crop/scale/flip/normalise then costs the device).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, log, median

ANCHOR = 221.5  # d2l FCN-32s/ResNet-18 at 320x480 on 2 GPUs, images/s
BATCH = 32


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def loader_rate(
    tree: tuple[Path, int, str], workers: int, pin: bool, gpu_augment: bool = False, epochs: int = 2
) -> tuple[float, tuple | None]:
    """Median images/s over `epochs` after a warm-up epoch; and one batch as it came."""
    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [
        "data=voc",
        f"data.root={tree[0]}",
        f"data.num_classes={tree[1]}",
        "data.crop_size=[320,480]",
        f"data.batch_size={BATCH}",
        f"data.num_workers={workers}",
        f"data.pin_memory={str(pin).lower()}",
        f"data.gpu_augment={str(gpu_augment).lower()}",
        "paths.output_dir=.",
    ]
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides)
    L.seed_everything(0, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    ids = dm.train_dataset.ids
    repeat = max(1, -(-BATCH * max(workers, 1) * 4 // len(ids)))
    dm.train_dataset.ids = ids * repeat
    loader = dm.train_dataloader()
    rates, kept = [], None
    for epoch in range(1 + epochs):  # epoch 0 starts the workers
        loader.sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch[0])
            kept = kept or batch
        rate = count / (time.perf_counter() - start)
        if epoch:
            rates.append(rate)
    del loader
    return median(rates), kept


def device_side_rate(batch: tuple, device: str, reps: int = 5) -> float:
    """images/s of data.gpu_augment's device half on one loader batch."""
    import torch

    from fcn.data.device_augment import apply_on_device

    images, masks, params = (t.to(device) for t in batch)
    times = []
    for _ in range(reps + 1):  # the first call warms up
        start = time.perf_counter()
        apply_on_device(images, masks, params, (320, 480))
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(images) / median(times[1:])


def bench_loader(
    tree: tuple[Path, int, str], seconds: float, gpu_train_rate: float | None, dry: bool = False
) -> dict[str, Any]:
    import torch

    has_gpu = torch.cuda.is_available()
    cores = usable_cores()
    result: dict[str, Any] = {
        "setup": f"data=voc data.root={tree[0]} ({tree[2]}), 320x480 crops, batch {BATCH}, "
        f"pin_memory={has_gpu}; median of 2 epochs after a warm-up epoch",
        "cores": cores,
        "anchor_x1_5_images_per_s": ANCHOR * 1.5,
        "skipped": {},
    }
    for name, gpu_augment in (("cpu_augment", False), ("gpu_augment", True)):
        one, batch = loader_rate(tree, 1, has_gpu, gpu_augment)
        row = {
            "images_per_s_1_worker": round(one, 1),
            "estimated_images_per_s_16_cores": round(one * 15),
        }
        many = loader_rate(tree, cores, has_gpu, gpu_augment)[0] if cores > 1 else one
        row["images_per_s_all_cores"] = round(many, 1)
        log(f"loader {name}: 1 worker {one:.0f} img/s, {cores} workers {many:.0f} img/s")
        if gpu_augment and (has_gpu or dry):
            device = "cuda" if has_gpu else "cpu"
            row["device_side_images_per_s"] = round(device_side_rate(batch, device), 1)
            row["device_side_on"] = device
        if gpu_train_rate:
            row["loader_to_gpu_train_ratio"] = round(many / gpu_train_rate, 2)
            row["loader_bound"] = many < gpu_train_rate
        result[name] = row
    if gpu_train_rate:
        result["gpu_train_images_per_s"] = gpu_train_rate
    else:
        result["skipped"]["ratio"] = "no GPU training rate (no CUDA GPU, or train not measured)"
    return result
