"""Training throughput on one GPU for scripts/bench_gpu.py (section `train`).

  train.<model>.<mode>  images/s and peak memory of a plain training step (SGD momentum, the
                        module's loss, batch 32 of random images already on the GPU):
                        fcn32s_resnet18 at 320x480 (the d2l recipe; anchor 221.5 img/s on
                        2 GPUs), fcn8s_resnet50 at 512x512; modes fp32, bf16 (autocast),
                        bf16_cl (+ channels_last), bf16_cl_compile (+ torch.compile)
  lightning_*           Trainer.fit of the SegmentationModule (bf16-mixed, channels_last) on
                        the same in-memory batches, against the plain loop

Each rate is the median of 3 timed blocks after warm-up steps; cuDNN autotuning is on (as in
trainer=gpu), TF32 as torch's defaults leave it.
"""

from __future__ import annotations

import time
from typing import Any

from bench_common import log, median

NUM_CLASSES, BATCH = 21, 32
MODELS = {
    "fcn32s_resnet18": ("resnet18", "fcn32s", (320, 480)),
    "fcn8s_resnet50": ("resnet50", "fcn8s", (512, 512)),
}
MODES = {
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16_cl": (True, True, False),
    "bf16_cl_compile": (True, True, True),
}
WARMUP, BLOCKS, STEPS = 3, 3, 5
# Rough seconds a configuration needs beyond its steps (compile: inductor on 16 cores).
SETUP_S = {"fp32": 5, "bf16": 5, "bf16_cl": 5, "bf16_cl_compile": 60}


def _batch(size: tuple[int, int], channels_last: bool):
    import torch

    images = torch.randn(BATCH, 3, *size, device="cuda")
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, NUM_CLASSES, (BATCH, *size), device="cuda", dtype=torch.uint8)
    return images, masks


def plain_rate(backbone: str, head: str, size: tuple[int, int], mode: str) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from fcn.core.classes import VOID_INDEX
    from fcn.models import build_model

    amp, channels_last, compile_ = MODES[mode]
    torch.manual_seed(0)
    model = build_model(backbone, head, NUM_CLASSES).cuda().train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_ else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    images, masks = _batch(size, channels_last)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(forward(images), masks.long(), ignore_index=VOID_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - started
    rates = []
    for _ in range(BLOCKS):
        start = time.perf_counter()
        for _ in range(STEPS):
            step()
        torch.cuda.synchronize()
        rates.append(BATCH * STEPS / (time.perf_counter() - start))
    return {
        "images_per_s": round(median(rates), 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "warmup_s": round(warmup_s, 1),
    }


def lightning_rate(size: tuple[int, int], blocks: int = BLOCKS) -> float:
    """Trainer.fit images/s: FCN-32s/ResNet-18, bf16-mixed, channels_last, batches on the GPU."""
    import lightning as L
    import torch
    from bench_common import ListDataset
    from torch.utils.data import DataLoader

    from fcn.training.module import SegmentationModule

    stamps: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx >= WARMUP and (batch_idx - WARMUP) % STEPS == 0:
                torch.cuda.synchronize()
                stamps.append(time.perf_counter())

    torch.manual_seed(0)
    module = SegmentationModule(
        "resnet18",
        "fcn32s",
        NUM_CLASSES,
        channels_last=True,
        optimizer={"name": "sgd", "lr": 1e-3, "momentum": 0.9},
    )
    batches = [_batch(size, True)] * (WARMUP + blocks * STEPS + 1)
    loader = DataLoader(ListDataset(batches), batch_size=None, num_workers=0)
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        benchmark=True,
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, train_dataloaders=loader)
    return median([BATCH * STEPS / (b - a) for a, b in zip(stamps, stamps[1:])])


def bench_train(seconds: float, has_gpu: bool) -> dict[str, Any]:
    if not has_gpu:
        return {"skipped": {"all": "no CUDA GPU: training throughput is measured on a GPU only"}}
    import torch

    torch.backends.cudnn.benchmark = True
    end = time.perf_counter() + seconds
    result: dict[str, Any] = {
        "batch": BATCH,
        "skipped": {},
        "tf32": {
            "cudnn": torch.backends.cudnn.allow_tf32,
            "matmul": torch.backends.cuda.matmul.allow_tf32,
        },
    }
    for name, (backbone, head, size) in MODELS.items():
        rows = result.setdefault(name, {"size": list(size)})
        for mode in MODES:
            if end - time.perf_counter() < SETUP_S[mode] + 10:
                result["skipped"][f"{name}.{mode}"] = "time guard: not enough of the budget left"
                continue
            try:
                rows[mode] = plain_rate(backbone, head, size, mode)
                log(f"train {name} {mode}: {rows[mode]}")
            except torch.OutOfMemoryError:
                rows[mode] = {"error": "out of GPU memory at batch 32"}
            torch.cuda.empty_cache()
    r18 = result["fcn32s_resnet18"]
    rates = [r18[m]["images_per_s"] for m in MODES if "images_per_s" in r18.get(m, {})]
    if rates:
        result["fcn32s_resnet18_best_images_per_s"] = max(rates)
        result["fcn32s_resnet18_vs_anchor_221_5"] = round(max(rates) / 221.5, 2)
    if end - time.perf_counter() > 20 and "images_per_s" in r18.get("bf16_cl", {}):
        rate = lightning_rate(MODELS["fcn32s_resnet18"][2])
        result["lightning_fcn32s_resnet18_bf16_cl_images_per_s"] = round(rate, 1)
        result["lightning_to_plain_ratio"] = round(rate / r18["bf16_cl"]["images_per_s"], 3)
    else:
        result["skipped"]["lightning"] = "time guard or no bf16_cl rate to compare with"
    return result
