"""Logits for whole images: whole or sliding-window, with flip and multi-scale averaging.

One function, `predict_logits`, serves validation, evaluation and prediction, so the masks
`fcn-predict` writes are exactly the ones `fcn-eval` scores. Test-time variants average LOGITS (not
probabilities or votes), window overlaps included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fcn.core.errors import ConfigError
from fcn.core.validate import positive_pair, whole_number

MODES = ("whole", "slide")
# Smallest input side the FCN accepts; smaller images/windows are padded up to it.
MIN_SIDE = 32


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn one image into logits (the `eval` group; `data.val_inference` in training)."""

    mode: str = "whole"
    window: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    # Windows per forward pass in slide mode (all windows of one image have the same size).
    window_batch: int = 4

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, key: str = "eval") -> InferenceOptions:
        """Check the config block and build the options; ConfigError names `key.<field>`."""
        cfg = dict(cfg or {})
        mode = cfg.get("mode", cls.mode)
        if mode not in MODES:
            raise ConfigError(f"{key}.mode={mode!r} is not one of {', '.join(MODES)}")
        window = positive_pair(cfg.get("window", cls.window), f"{key}.window", "[512,512]")
        stride = positive_pair(cfg.get("stride", cls.stride), f"{key}.stride", "[341,341]")
        if mode == "slide" and (window[0] < MIN_SIDE or window[1] < MIN_SIDE):
            raise ConfigError(f"{key}.window={list(window)}: each side must be >= {MIN_SIDE}")
        flip = cfg.get("flip", cls.flip)
        if not isinstance(flip, bool):
            raise ConfigError(f"{key}.flip must be true or false, got {flip!r}")
        scales = cfg.get("scales", cls.scales)
        if isinstance(scales, int | float):
            scales = [scales]
        try:
            scales = tuple(float(s) for s in scales)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}.scales must be a list of numbers, got {scales!r}") from None
        if not scales or min(scales) <= 0:
            raise ConfigError(f"{key}.scales must be positive numbers, e.g. [0.75,1.0,1.25]")
        window_batch = cfg.get("window_batch", cls.window_batch)
        window_batch = whole_number(window_batch, f"{key}.window_batch")
        return cls(mode, window, stride, flip, scales, window_batch)


# Anything that maps N x 3 x H x W images to N x C x H x W logits: an FCN, or an exported
# one (fcn/deploy/runtimes.py), so the test-time options apply around any of them.
Network = Callable[[Tensor], Tensor]


@torch.no_grad()
def predict_logits(model: Network, images: Tensor, options: InferenceOptions) -> Tensor:
    """`N x 3 x H x W` normalised images -> `N x C x H x W` logits, averaged over the
    scales and (with `flip`) the horizontal mirror."""
    h, w = images.shape[-2:]
    total: Tensor | None = None
    count = 0
    for scale in options.scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = images if size == (h, w) else _resize(images, size)
        variants = [False, True] if options.flip else [False]
        for flipped in variants:
            x = scaled.flip(-1) if flipped else scaled
            logits = _logits_at_scale(model, x, options)
            if flipped:
                logits = logits.flip(-1)
            if size != (h, w):
                logits = _resize(logits, (h, w))
            total = logits if total is None else total + logits
            count += 1
    assert total is not None
    return total / count if count > 1 else total


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _logits_at_scale(model: Network, images: Tensor, options: InferenceOptions) -> Tensor:
    if options.mode == "slide":
        return _slide(model, images, options.window, options.stride, options.window_batch)
    return _forward(model, images)


def _forward(model: Network, images: Tensor) -> Tensor:
    """The model on inputs of any size: sides under MIN_SIDE are zero-padded, then cropped."""
    h, w = images.shape[-2:]
    if h >= MIN_SIDE and w >= MIN_SIDE:
        return model(images)
    padded = F.pad(images, (0, max(0, MIN_SIDE - w), 0, max(0, MIN_SIDE - h)))
    return model(padded)[..., :h, :w]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window offsets along one side: every `stride`, the last one flush with the edge."""
    if length <= window:
        return [0]
    steps = math.ceil((length - window) / stride)
    return sorted({min(i * stride, length - window) for i in range(steps + 1)})


def _slide(
    model: Network,
    images: Tensor,
    window: tuple[int, int],
    stride: tuple[int, int],
    window_batch: int,
) -> Tensor:
    """Overlapping windows (clipped to the image), their logits summed and divided by the
    number of windows covering each pixel."""
    n, _, h, w = images.shape
    wh, ww = min(window[0], h), min(window[1], w)
    boxes = [
        (top, left)
        for top in window_starts(h, wh, stride[0])
        for left in window_starts(w, ww, stride[1])
    ]
    total: Tensor | None = None
    hits = images.new_zeros(1, 1, h, w)
    for k in range(0, len(boxes), window_batch):
        chunk = boxes[k : k + window_batch]
        crops = torch.cat([images[..., t : t + wh, c : c + ww] for t, c in chunk])
        out = _forward(model, crops)
        if total is None:
            total = out.new_zeros(n, out.shape[1], h, w)
        for j, (t, c) in enumerate(chunk):
            total[..., t : t + wh, c : c + ww] += out[j * n : (j + 1) * n]
            hits[..., t : t + wh, c : c + ww] += 1
    assert total is not None
    return total / hits
