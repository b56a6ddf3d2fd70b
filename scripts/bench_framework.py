"""Framework overhead: Lightning's Trainer.fit against a plain PyTorch loop (`framework_*`).

Same FCN-8s/ResNet-18, SGD and per-step poly schedule, in-memory random batches of the default
run's shapes. A callback runs one plain step right before each Lightning step, so background
load hits both alike; the ratio is a median over blocks of log_every_n_steps steps.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from bench_common import (
    ListDataset,
    PlainStepper,
    Settings,
    loadavg,
    log,
    make_module,
    make_trainer,
    median,
)


def random_batches(n: int, batch: int, size: tuple[int, int], classes: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, *size, generator=g)
        y = torch.randint(0, classes, (batch, *size), generator=g)
        y[:, :2] = 255  # some void, as real labels have
        out.append((x, y))
    return out


def bench_framework(s: Settings, work: Path) -> dict[str, Any]:
    """Trainer.fit vs a plain loop, interleaved step by step so both see the same load.

    A callback runs one plain step (its own copy of the model and optimizer, same batch) at
    the start of every Lightning step; Lightning's step is timed from the end of that plain
    step to the start of the next batch (fetch, step, logging, scheduler, all hooks)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    class Interleave(L.Callback):
        def __init__(self, plain: PlainStepper) -> None:
            self.plain = plain
            self.plain_s: list[float] = []
            self.arrive: list[float] = []  # a Lightning step has ended
            self.depart: list[float] = []  # a Lightning step starts

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.arrive.append(time.perf_counter())
            with torch.enable_grad():
                start = time.perf_counter()
                self.plain.step(*batch)
                self.plain_s.append(time.perf_counter() - start)
            self.depart.append(time.perf_counter())

    n = s.fw_warmup + s.fw_steps + 1  # the start of batch n closes the last timed step
    batches = random_batches(n, s.fw_batch, s.fw_size, s.fw_classes)
    loader = DataLoader(ListDataset(batches), batch_size=None, shuffle=False, num_workers=0)
    torch.manual_seed(0)
    module = make_module(s.fw_classes)
    clock = Interleave(PlainStepper(copy.deepcopy(module.model), n))
    threads = torch.get_num_threads()
    trainer = make_trainer(work / "framework", max_epochs=1, callbacks=[clock], limit_val_batches=0)
    trainer.fit(module, train_dataloaders=loader)
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"fit changed the thread count: {threads} -> {torch.get_num_threads()}")
    timed = range(s.fw_warmup, s.fw_warmup + s.fw_steps)
    lit = [clock.arrive[k + 1] - clock.depart[k] for k in timed]
    plain = [clock.plain_s[k] for k in timed]
    # Blocks of log_every_n_steps steps, so each holds one periodic logger write.
    blocks = [
        (sum(plain[i : i + s.fw_block]), sum(lit[i : i + s.fw_block]))
        for i in range(0, s.fw_steps, s.fw_block)
    ]
    ratios = [p / t for p, t in blocks]
    log(f"framework block ratios {[round(r, 3) for r in ratios]} load {loadavg()[0]}")
    return {
        "framework_ratio": median(ratios),
        "framework_ratio_total": sum(plain) / sum(lit),
        "framework_fit_images_per_s": s.fw_batch / median(lit),
        "framework_plain_images_per_s": s.fw_batch / median(plain),
        "framework_setup": (
            f"FCN-8s/ResNet-18, {s.fw_classes} classes, batch {s.fw_batch} at "
            f"{s.fw_size[0]}x{s.fw_size[1]} (the default run's shapes), SGD+poly per step, "
            f"TensorBoardLogger log_every_n_steps=10; Lightning and plain steps interleaved, "
            f"{s.fw_steps} timed steps each after {s.fw_warmup} warm-up, ratio = median over "
            f"blocks of {s.fw_block} steps of plain time / Lightning time; {threads} threads"
        ),
    }
