"""Pictures of predictions: class colours, input | truth | prediction grids, confusion figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from fcn.core.classes import VOC_COLOURS, colour_mask
from fcn.core.normalization import denormalize

Colours = Sequence[Sequence[int]]


def colorize(mask: torch.Tensor, colours: Colours = VOC_COLOURS) -> torch.Tensor:
    """H x W class indices (255 void) -> 3 x H x W uint8 in `colours` (256 RGB entries)."""
    return colour_mask(mask, colours).permute(2, 0, 1)


def prediction_row(
    image: torch.Tensor,
    target: torch.Tensor,
    pred: torch.Tensor,
    max_side: int | None = None,
    colours: Colours = VOC_COLOURS,
) -> torch.Tensor:
    """One 3 x H x 3W uint8 strip: input | ground truth | prediction in the classes' `colours`,
    each panel shrunk to at most `max_side` pixels on its longer side (None: full size)."""
    panels = [denormalize(image), colorize(target, colours), colorize(pred, colours)]
    h, w = panels[0].shape[-2:]
    if max_side is not None and max(h, w) > max_side:
        size = [max(1, round(h * max_side / max(h, w))), max(1, round(w * max_side / max(h, w)))]
        # Class colours must stay exact: nearest for the label maps, smooth for the photo.
        panels = [TF.resize(panels[0], size, antialias=True)] + [
            TF.resize(p, size, interpolation=InterpolationMode.NEAREST_EXACT) for p in panels[1:]
        ]
    return torch.cat(panels, dim=2)


def prediction_grid(rows: list[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """Stack strips of different sizes into one 3 x H x W uint8 picture on a white canvas."""
    height = sum(r.shape[1] for r in rows) + gap * (len(rows) - 1)
    width = max(r.shape[2] for r in rows)
    canvas = torch.full((3, height, width), 255, dtype=torch.uint8)
    y = 0
    for r in rows:
        canvas[:, y : y + r.shape[1], : r.shape[2]] = r
        y += r.shape[1] + gap
    return canvas


def confusion_figure(confmat: torch.Tensor, class_names: list[str]):
    """A row-normalised confusion-matrix heat map as a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confmat.double().cpu().numpy()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    fig.tight_layout()
    return fig
