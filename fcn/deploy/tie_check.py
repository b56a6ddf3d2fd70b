"""Two runs of one model (CPU and GPU, two runtimes) may pick different classes only where
the winning logits tie: tells such pixels apart from real disagreements."""

from __future__ import annotations

import torch


def untied_differences(reference: torch.Tensor, other: torch.Tensor, tie: float = 1e-3) -> int:
    """Pixels whose class differs between two N x C x H x W logit tensors although the
    reference's best two logits lie more than `tie` apart (0: the masks agree up to ties)."""
    reference, other = reference.float().cpu(), other.float().cpu()
    differ = reference.argmax(1) != other.argmax(1)
    if not differ.any():
        return 0
    top2 = reference.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    return int((differ & (gap > tie)).sum())
