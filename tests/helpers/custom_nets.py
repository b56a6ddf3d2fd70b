"""A backbone and a head of "your own", for tests/test_custom_modules.py (imported by class
path, as `backbone._target_=helpers.custom_nets.TinyBackbone`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TinyBackbone(nn.Module):
    """Three strided convs: stride-8, 16 and 32 maps of 8, 16 and 32 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.to8 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=8, padding=1), nn.BatchNorm2d(8))
        self.to16 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.to32 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.channels = (8, 16, 32)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        s8 = F.relu(self.to8(x))
        s16 = F.relu(self.to16(s8))
        return {"stride8": s8, "stride16": s16, "stride32": F.relu(self.to32(s16))}


class TinyHead(nn.Module):
    """Scores stride 8 only and upsamples it bilinearly."""

    def __init__(self, in_channels: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(in_channels[0], num_classes, 1)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        s8 = features["stride8"]
        size = (s8.shape[-2] * 8, s8.shape[-1] * 8)
        return F.interpolate(self.score(s8), size=size, mode="bilinear", align_corners=False)
