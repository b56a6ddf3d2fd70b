"""`trainer.precision: auto`: bf16 mixed precision where the GPU has bf16, fp16 mixed on other
GPUs, full fp32 on CPU. Decided once at start, before the Trainer exists (Lightning has no
"auto" precision); any explicit value (`trainer.precision=32-true`) is kept as given."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import torch

AUTO = "auto"


def runs_on_cuda(accelerator: str) -> bool:
    """Whether a Trainer with this accelerator will put the model on a CUDA GPU."""
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def auto_precision(accelerator: str) -> tuple[str, str]:
    """(precision, why) for `precision: auto` on `accelerator`."""
    if not runs_on_cuda(accelerator):
        return "32-true", "no CUDA GPU"
    if not torch.cuda.is_available():
        # trainer.accelerator=gpu on a machine without one: Lightning reports that itself.
        return "16-mixed", "no CUDA GPU visible to check bf16"
    name = torch.cuda.get_device_name()
    # bf16 needs compute capability 8.0+ (Ampere, Hopper, ...); fp16 AMP with loss scaling
    # is the fast path on older GPUs (V100, T4).
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed", f"{name} supports bf16"
    return "16-mixed", f"{name} has no bf16"


def resolve_precision(trainer_cfg: MutableMapping[str, Any]) -> str:
    """Replace `precision: auto` in a trainer config by the choice for this machine; returns a
    note for the start line (`precision=bf16-mixed (auto: NVIDIA H100 supports bf16)`)."""
    precision = str(trainer_cfg.get("precision", "32-true"))
    if precision != AUTO:
        return f"precision={precision}"
    chosen, why = auto_precision(str(trainer_cfg.get("accelerator", "auto")))
    trainer_cfg["precision"] = chosen
    return f"precision={chosen} (auto: {why})"
