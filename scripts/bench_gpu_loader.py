"""The real training loader against the GPU for scripts/bench_gpu.py (section `loader`).

`data=voc data.root=<voc_mini>` as fcn-train builds it (decode, random scale 0.5-2, 320x480
crop, flip, normalise; batch 32; pinned memory beside a GPU), its train ids repeated so an
epoch keeps every worker busy. Measured with 1 worker (the cost per core) and with one worker
per core of this machine; `loader_to_gpu_train_ratio` divides the latter by the GPU's best
FCN-32s/ResNet-18 training rate: under 1 the GPU waits for data, and 1.5 leaves headroom.
The 16-core figure is the 1-worker rate x 15 (one core left to the training process).
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


def loader_rate(voc_root: Path, workers: int, pin: bool, epochs: int = 2) -> float:
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            [
                "data=voc",
                f"data.root={voc_root}",
                "data.crop_size=[320,480]",
                f"data.batch_size={BATCH}",
                f"data.num_workers={workers}",
                f"data.pin_memory={str(pin).lower()}",
                "paths.output_dir=.",
            ],
        )
    L.seed_everything(0, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    ids = dm.train_dataset.ids
    repeat = max(1, -(-BATCH * max(workers, 1) * 4 // len(ids)))
    dm.train_dataset.ids = ids * repeat
    loader = dm.train_dataloader()
    rates = []
    for epoch in range(1 + epochs):  # epoch 0 starts the workers
        loader.sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for images, _ in loader:
            count += len(images)
        rate = count / (time.perf_counter() - start)
        if epoch:
            rates.append(rate)
    del loader
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return median(rates)


def bench_loader(voc_root: Path, seconds: float, gpu_train_rate: float | None) -> dict[str, Any]:
    import torch

    if not (voc_root / "ImageSets" / "Segmentation" / "train.txt").is_file():
        return {"skipped": {"all": f"voc_mini not found at {voc_root} (set FCN_VOC_MINI)"}}
    pin = torch.cuda.is_available()
    cores = usable_cores()
    one = loader_rate(voc_root, 1, pin)
    log(f"loader, 1 worker: {one:.0f} img/s")
    result: dict[str, Any] = {
        "setup": f"data=voc data.root={voc_root}, 320x480 crops, batch {BATCH}, pin_memory={pin}",
        "cores": cores,
        "images_per_s_1_worker": round(one, 1),
        "estimated_images_per_s_16_cores": round(one * 15, 0),
        "anchor_x1_5_images_per_s": ANCHOR * 1.5,
        "skipped": {},
    }
    if cores > 1:
        many = loader_rate(voc_root, cores, pin)
        log(f"loader, {cores} workers: {many:.0f} img/s")
        result[f"images_per_s_{cores}_workers"] = round(many, 1)
        result["images_per_s_all_cores"] = round(many, 1)
    else:
        result["images_per_s_all_cores"] = round(one, 1)
    if gpu_train_rate:
        ratio = result["images_per_s_all_cores"] / gpu_train_rate
        result["gpu_train_images_per_s"] = gpu_train_rate
        result["loader_to_gpu_train_ratio"] = round(ratio, 2)
        result["loader_bound"] = ratio < 1.0
    else:
        result["skipped"]["ratio"] = "no GPU training rate (no CUDA GPU or train not measured)"
    return result
