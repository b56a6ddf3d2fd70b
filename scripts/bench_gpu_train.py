"""Training throughput on one GPU for scripts/bench_gpu.py (section `train`).

  <model>.<mode>  images/s and peak memory of a plain training step (SGD momentum, the
                  module's loss, batch 32 of random images already on the GPU):
                  fcn32s_resnet18 at 320x480 (the d2l recipe; anchor 221.5 img/s on 2 GPUs),
                  fcn8s_resnet50 at 512x512; modes fp32, bf16 (autocast), bf16_cl
                  (+ channels_last), bf16_cl_compile (+ torch.compile)
  lightning_*     Trainer.fit of the SegmentationModule (bf16-mixed, channels_last) on the
                  same in-memory batches, against the plain loop

Each rate is the median of 3 timed blocks after warm-up steps; cuDNN autotuning is on (as in
trainer=gpu), TF32 as torch's defaults leave it. `dry=True` runs the same code on the CPU at
tiny sizes (a check of this file, numbers meaningless).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench_common import ListDataset, log, median

NUM_CLASSES = 21
MODELS = {
    "fcn32s_resnet18": ("resnet18", "fcn32s", (320, 480)),
    "fcn8s_resnet50": ("resnet50", "fcn8s", (512, 512)),
}
MODES = {  # autocast bf16, channels_last, torch.compile
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16_cl": (True, True, False),
    "bf16_cl_compile": (True, True, True),
}
# Rough seconds a configuration needs beyond its steps (compile: inductor on 16 cores).
SETUP_S = {"fp32": 5, "bf16": 5, "bf16_cl": 5, "bf16_cl_compile": 60}


@dataclass(frozen=True)
class Sizes:
    device: str
    batch: int
    warmup: int
    blocks: int
    steps: int
    size: tuple[int, int] | None  # None: each model's own


GPU = Sizes("cuda", 32, 3, 3, 5, None)
DRY = Sizes("cpu", 2, 1, 2, 1, (64, 96))


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _batch(s: Sizes, size: tuple[int, int], channels_last: bool):
    import torch

    images = torch.randn(s.batch, 3, *size, device=s.device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, NUM_CLASSES, (s.batch, *size), device=s.device, dtype=torch.uint8)
    return images, masks


def plain_rate(s: Sizes, backbone: str, head: str, size: tuple[int, int], mode: str) -> dict:
    import torch
    import torch.nn.functional as F

    from fcn.core.classes import VOID_INDEX
    from fcn.models import build_model

    amp, channels_last, compile_ = MODES[mode]
    torch.manual_seed(0)
    model = build_model(backbone, head, NUM_CLASSES).to(s.device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_ else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    images, masks = _batch(s, size, channels_last)

    def step() -> None:
        with torch.autocast(s.device, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(forward(images), masks.long(), ignore_index=VOID_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if s.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(s.warmup):
        step()
    _sync(s.device)
    warmup_s = time.perf_counter() - started
    rates = []
    for _ in range(s.blocks):
        start = time.perf_counter()
        for _ in range(s.steps):
            step()
        _sync(s.device)
        rates.append(s.batch * s.steps / (time.perf_counter() - start))
    peak = torch.cuda.max_memory_allocated() / 2**30 if s.device == "cuda" else None
    return {
        "images_per_s": round(median(rates), 1),
        "peak_memory_gib": round(peak, 2) if peak is not None else None,
        "warmup_s": round(warmup_s, 1),
    }


def lightning_rate(s: Sizes, size: tuple[int, int]) -> float:
    """Trainer.fit images/s: FCN-32s/ResNet-18, bf16-mixed, channels_last, batches on device."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from fcn.training.module import SegmentationModule

    stamps: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx >= s.warmup and (batch_idx - s.warmup) % s.steps == 0:
                _sync(s.device)
                stamps.append(time.perf_counter())

    torch.manual_seed(0)
    module = SegmentationModule(
        "resnet18",
        "fcn32s",
        NUM_CLASSES,
        channels_last=True,
        optimizer={"name": "sgd", "lr": 1e-3, "momentum": 0.9},
    )
    batches = [_batch(s, size, True)] * (s.warmup + s.blocks * s.steps + 1)
    loader = DataLoader(ListDataset(batches), batch_size=None, num_workers=0)
    trainer = L.Trainer(
        accelerator="gpu" if s.device == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed",
        benchmark=s.device == "cuda",
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, train_dataloaders=loader)
    return median([s.batch * s.steps / (b - a) for a, b in zip(stamps, stamps[1:])])


def bench_train(
    seconds: float, has_gpu: bool, dry: bool = False, out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fills `out` as it goes (what was measured survives the section's time limit)."""
    result: dict[str, Any] = {} if out is None else out
    if not has_gpu and not dry:
        result["skipped"] = {"all": "no CUDA GPU: training throughput is measured on a GPU only"}
        return result
    import torch

    s = DRY if dry else GPU
    torch.backends.cudnn.benchmark = True
    end = time.perf_counter() + seconds
    result.update(
        batch=s.batch,
        skipped={},
        tf32={
            "cudnn": torch.backends.cudnn.allow_tf32,
            "matmul": torch.backends.cuda.matmul.allow_tf32,
        },
    )
    for name, (_, _, size) in MODELS.items():
        result[name] = {"size": list(s.size or size)}
    # Every uncompiled configuration, then Lightning against the plain loop, then compiling
    # (minutes of inductor for ResNet-50): what the time guard drops comes last.
    uncompiled = [(n, m) for n in MODELS for m in MODES if not MODES[m][2]]
    _configurations(s, uncompiled, end, result, dry)
    r18 = result["fcn32s_resnet18"]
    if end - time.perf_counter() > 20 and "images_per_s" in r18.get("bf16_cl", {}):
        rate = lightning_rate(s, tuple(r18["size"]))
        log(f"train Lightning fcn32s_resnet18 bf16_cl: {rate:.1f} img/s")
        result["lightning_fcn32s_resnet18_bf16_cl_images_per_s"] = round(rate, 1)
        result["lightning_to_plain_ratio"] = round(rate / r18["bf16_cl"]["images_per_s"], 3)
    else:
        result["skipped"]["lightning"] = "time guard, or no bf16_cl rate to compare with"
    compiled = [(n, m) for n in MODELS for m in MODES if MODES[m][2]]
    _configurations(s, compiled, end, result, dry)
    return result


def _configurations(s: Sizes, plan: list, end: float, result: dict[str, Any], dry: bool) -> None:
    import torch

    for name, mode in plan:
        backbone, head, _ = MODELS[name]
        rows = result[name]
        if dry and MODES[mode][2]:
            result["skipped"][f"{name}.{mode}"] = "dry run: inductor on 2 CPU cores is minutes"
            continue
        if end - time.perf_counter() < SETUP_S[mode] + 10:
            result["skipped"][f"{name}.{mode}"] = "time guard: not enough of the budget left"
            continue
        try:
            rows[mode] = plain_rate(s, backbone, head, tuple(rows["size"]), mode)
            log(f"train {name} {mode}: {rows[mode]}")
        except torch.OutOfMemoryError:
            rows[mode] = {"error": f"out of GPU memory at batch {s.batch}"}
        if s.device == "cuda":
            torch.cuda.empty_cache()
        rates = [rows[m]["images_per_s"] for m in MODES if "images_per_s" in rows.get(m, {})]
        if name == "fcn32s_resnet18" and rates:
            result["fcn32s_resnet18_best_images_per_s"] = max(rates)
            result["fcn32s_resnet18_best_vs_anchor_221_5"] = round(max(rates) / 221.5, 2)
