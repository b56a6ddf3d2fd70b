"""Masks for photos: normalise, logits with the test-time options, class indices (what
fcn-predict writes and `load_segmenter(...).predict` returns)."""

from __future__ import annotations

import torch
from torch import Tensor

from fcn.core.normalization import normalize_image
from fcn.models.inference import InferenceOptions, Network, predict_logits
from fcn.training.metrics import argmax_classes


@torch.no_grad()
def predict_masks(model: Network, images: Tensor, options: InferenceOptions) -> Tensor:
    """`N x 3 x H x W` uint8 RGB images -> `N x H x W` uint8 class indices on the CPU: what
    fcn-predict writes and `load_segmenter(...).predict` returns."""
    logits = predict_logits(model, normalize_image(images), options)
    return argmax_classes(logits, torch.uint8).cpu()
