"""Optimizers and learning-rate schedules, built by name from the `optimizer`/`scheduler` config."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fcn.core.errors import ConfigError

if TYPE_CHECKING:
    import lightning as L

OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}
SCHEDULERS = ("poly", "cosine", "step", "constant")


def build_optimizer(
    backbone: nn.Module, head: nn.Module, name: str, lr: float, backbone_lr_mult: float = 1.0, **kw
) -> torch.optim.Optimizer:
    """Two parameter groups, backbone at `lr * backbone_lr_mult` and head at `lr`.

    Frozen parameters (e.g. fixed bilinear upsamplers) are left out.
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={name!r} is unknown; choose one of {sorted(OPTIMIZERS)}")
    if lr <= 0:
        raise ConfigError(f"optimizer.lr={lr} must be positive")
    groups = [
        {"params": [p for p in module.parameters() if p.requires_grad], "lr": lr * mult}
        for module, mult in ((backbone, backbone_lr_mult), (head, 1.0))
    ]
    return OPTIMIZERS[name]([g for g in groups if g["params"]], lr=lr, **kw)


def lr_factor(
    name: str,
    step: int,
    total_steps: int,
    steps_per_epoch: int,
    power: float = 0.9,
    warmup_steps: int = 0,
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    min_factor: float = 0.0,
) -> float:
    """The multiplier of the base lr after `step` optimizer steps.

    poly: (1 - t)^power; cosine: half a cosine to `min_factor`; step: x`gamma` at each epoch in
    `milestones`; constant: 1. A linear warm-up over `warmup_steps` multiplies any of them.
    """
    t = min(step / max(total_steps, 1), 1.0)
    if name == "poly":
        factor = (1.0 - t) ** power
    elif name == "cosine":
        factor = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    elif name == "step":
        epoch = step // max(steps_per_epoch, 1)
        factor = gamma ** sum(epoch >= m for m in milestones)
    elif name == "constant":
        factor = 1.0
    else:
        raise ConfigError(f"scheduler.name={name!r} is unknown; choose one of {list(SCHEDULERS)}")
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    name: str,
    **kw: Any,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR following `lr_factor` (per step so resuming mid-epoch is exact)."""
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    try:  # fail now, before training, on a bad name or key
        lr_factor(name, 0, total_steps, steps_per_epoch, **kw)
    except TypeError as err:
        raise ConfigError(
            f"scheduler: {err}; see conf/scheduler/{name}.yaml for its keys"
        ) from None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(name, step, total_steps, steps_per_epoch, **kw)
    )


def scheduled_steps(trainer: L.Trainer, train_batches: int) -> int:
    """The optimizer steps `fit` will take, for a schedule's length: Lightning's
    `trainer.estimated_stepping_batches`, computed from the train loader's length.

    Asked from configure_optimizers, Lightning's property loads the train loader into the fit
    loop before the checkpoint's loop state is restored, and the loop then never hands the
    loader its saved position (a mid-epoch resume would restart the epoch's stream). Same rules
    as the property: limit_train_batches (int: at most, float: a fraction; overfit_batches and
    fast_dev_run set it), accumulate_grad_batches, max_epochs, max_steps.
    """
    if trainer.max_epochs == -1:  # epochs without end: max_steps bounds the run
        return trainer.max_steps
    limit = trainer.limit_train_batches
    batches = min(train_batches, limit) if isinstance(limit, int) else int(train_batches * limit)
    steps = math.ceil(batches / trainer.accumulate_grad_batches) * max(trainer.max_epochs, 1)
    return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps
