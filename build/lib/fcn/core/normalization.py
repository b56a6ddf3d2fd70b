"""ImageNet input normalisation, both ways: every network input is RGB / 255 normalised by
ImageNet's mean and std (what torchvision's and timm's pretrained backbones expect)."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 ImageNet-normalised."""
    image = F.to_dtype(image, torch.float32, scale=True)
    return F.normalize(image, IMAGENET_MEAN, IMAGENET_STD)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """3 x H x W ImageNet-normalised float -> 3 x H x W uint8 on the CPU."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return ((image.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
