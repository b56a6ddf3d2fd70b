"""Data loading against training: the training DataLoader's images/s over VOC JPEGs, and
FCN-8s/ResNet-18 training throughput at batch 8 on crops that loader produced (`loader_*`,
`train_images_per_s_fcn8s_resnet18_b8`, `loader_to_train_ratio`).

The loader is timed over whole epochs after a warm-up epoch that starts its workers; the
training steps are a plain loop (`PlainStepper`), timed one by one after warm-up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench_common import BACKBONE, HEAD, PlainStepper, Settings, log, median


def bench_loader(s: Settings, root: Path, num_classes: int) -> tuple[dict[str, Any], list]:
    """Images/s of the training DataLoader; also returns a few of its batches for training."""
    import lightning as L

    from fcn.data import VOCDataModule

    L.seed_everything(0, workers=True, verbose=False)
    dm = VOCDataModule(
        root=str(root),
        num_classes=num_classes,
        crop_size=list(s.train_crop),
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
    )
    dm.setup("fit")
    if s.loader_images is not None:
        dm.train_dataset.ids = dm.train_dataset.ids[: s.loader_images]
    loader = dm.train_dataloader()
    rates, kept = [], []
    for epoch in range(1 + s.loader_epochs):  # epoch 0 starts the workers: warm-up
        loader.sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for images, masks in loader:
            count += len(images)
            if len(kept) < s.train_warmup + s.train_steps and len(images) == 8:
                kept.append((images, masks))
        rate = count / (time.perf_counter() - start)
        log(f"loader epoch {epoch}: {count} images, {rate:.1f} img/s")
        if epoch:
            rates.append(rate)
    del loader  # stops the persistent workers
    return {
        "loader_images_per_s": median(rates),
        "loader_setup": (
            f"VOCDataModule.train_dataloader over {len(dm.train_dataset)} images: decode, "
            f"random scale 0.5-2, crop {s.train_crop[0]}x{s.train_crop[1]}, flip, normalise, "
            f"batch 8, 2 persistent workers; median of {s.loader_epochs} epochs after 1 warm-up"
        ),
    }, kept


def bench_train_b8(s: Settings, batches: list, num_classes: int) -> dict[str, Any]:
    """FCN-8s/ResNet-18 training throughput at batch 8 on the loader's own crops."""
    import torch

    from fcn.models import build_model

    torch.manual_seed(0)
    model = build_model(BACKBONE, HEAD, num_classes)
    stepper = PlainStepper(model, len(batches))
    steps = []
    for images, masks in batches:
        start = time.perf_counter()
        stepper.step(images, masks)
        steps.append(time.perf_counter() - start)
    steps = steps[s.train_warmup :]
    rate = 8 / median(steps)
    log(f"training FCN-8s/ResNet-18 batch 8: {rate:.2f} img/s ({len(steps)} steps)")
    return {"train_images_per_s_fcn8s_resnet18_b8": rate}


def bench_loader_vs_train(s: Settings, root: Path, num_classes: int) -> dict[str, Any]:
    """The loader, then training on its batches, and how many times faster the loader is."""
    result, batches = bench_loader(s, root, num_classes)
    result.update(bench_train_b8(s, batches, num_classes))
    result["loader_to_train_ratio"] = (
        result["loader_images_per_s"] / result["train_images_per_s_fcn8s_resnet18_b8"]
    )
    return result
