"""Evaluation overhead: Trainer.validate against a bare no_grad forward (`eval_*`).

Whole val images at batch 1, decoded once so both sides see the same tensors. A callback runs
the bare forward on each image right before its validation step; per image, the median over
rounds is kept, then summed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench_common import ListDataset, Settings, loadavg, log, make_module, make_trainer, median


def bench_eval(s: Settings, root: Path, num_classes: int, work: Path) -> dict[str, Any]:
    """Trainer.validate vs a bare forward, interleaved image by image (same load on both).

    A callback runs the bare no_grad forward on each batch's image at the start of its
    validation step; the validation step is timed from the end of that forward to the start
    of the next batch (the last one: to the end of the epoch-end hooks)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from fcn.data import VOCSegmentation, pad_collate

    class Interleave(L.Callback):
        def __init__(self, model) -> None:
            self.model = model
            self.bare_s: list[float] = []
            self.arrive: list[float] = []
            self.depart: list[float] = []

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *_) -> None:
            self.arrive.append(time.perf_counter())
            # A plain no_grad loop runs outside Lightning's inference_mode.
            with torch.inference_mode(False), torch.no_grad():
                start = time.perf_counter()
                self.model(batch[0])
                self.bare_s.append(time.perf_counter() - start)
            self.depart.append(time.perf_counter())

        def on_validation_end(self, trainer, pl_module) -> None:
            self.arrive.append(time.perf_counter())

    dataset = VOCSegmentation(root, "val", num_classes=num_classes)
    count = len(dataset) if s.eval_images is None else min(s.eval_images, len(dataset))
    pairs = [dataset[i] for i in range(count)]  # decoded once: both sides see the same tensors
    loader = DataLoader(ListDataset(pairs), batch_size=1, collate_fn=pad_collate, num_workers=0)
    torch.manual_seed(0)
    module = make_module(num_classes)
    with torch.no_grad():  # warm-up: oneDNN sets up every image size once
        for image, _ in pairs:
            module.model.eval()(image[None])
    evals, bares, wholes = [], [], []
    for r in range(s.eval_rounds):
        clock = Interleave(module.model)
        trainer = make_trainer(work / "eval", callbacks=[clock])
        start = time.perf_counter()
        trainer.validate(module, dataloaders=loader, verbose=False)
        wholes.append(time.perf_counter() - start - sum(clock.bare_s))
        evals.append([b - a for a, b in zip(clock.depart, clock.arrive[1:])])
        bares.append(clock.bare_s)
        log(
            f"eval round {r}: Trainer.validate {count / sum(evals[-1]):.2f} img/s, "
            f"bare {count / sum(bares[-1]):.2f} img/s, load {loadavg()[0]}"
        )
    # Per image, the median over rounds, then summed: both sides judged on the same images.
    eval_s = sum(median(t) for t in zip(*evals))
    bare_s = sum(median(t) for t in zip(*bares))
    sizes = {tuple(x.shape[-2:]) for x, _ in pairs}
    return {
        "eval_images_per_s": count / eval_s,
        "forward_images_per_s": count / bare_s,
        "eval_to_forward_ratio": bare_s / eval_s,
        "eval_whole_call_images_per_s": count / median(wholes),
        "eval_setup": (
            f"FCN-8s/ResNet-18 on {count} whole val images ({len(sizes)} sizes, e.g. "
            f"{max(sizes)}), batch 1; Trainer.validate (loss, argmax, confusion-matrix update, "
            f"epoch-end metrics and TensorBoard images; first batch to the end "
            f"of the epoch-end hooks) vs a no_grad forward, interleaved image by image; per "
            f"image the median of {s.eval_rounds} rounds after a warm-up forward pass"
        ),
    }
