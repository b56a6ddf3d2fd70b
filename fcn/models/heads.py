"""FCN score heads (32s / 16s / 8s) and the bilinear kernel their upsamplers start from."""

from __future__ import annotations

import torch
from torch import Tensor, nn

HEADS = ("fcn32s", "fcn16s", "fcn8s")

# Output stride of each head's final upsampler.
_FINAL_STRIDE = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> Tensor:
    """Transposed-conv weight `[in, out, k, k]` that performs bilinear upsampling.

    Channel i maps to channel i only (off-diagonal channel pairs are zero), as in the seeds.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    row = 1 - torch.abs(og - center) / factor
    filt = row.reshape(-1, 1) * row.reshape(1, -1)
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    idx = range(min(in_channels, out_channels))
    weight[idx, idx, :, :] = filt
    return weight


def _upsampler(channels: int, factor: int, learnable: bool) -> nn.ConvTranspose2d:
    """x`factor` transposed conv (k=2f, s=f, p=f/2): maps n -> n*f exactly, starts bilinear."""
    up = nn.ConvTranspose2d(
        channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))
    up.weight.requires_grad_(learnable)
    return up


def _zero_score(in_channels: int, num_classes: int) -> nn.Conv2d:
    """Skip score conv starting at zero, so a fresh 16s/8s head computes what its 32s path does."""
    conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FCNHead(nn.Module):
    """Scores the backbone's stride-8/16/32 features and fuses them coarse-to-fine.

    Submodule names are shared across variants so staged training (32s -> 16s -> 8s) can copy
    weights by name: `score32`, `up32` (stride 32 -> 16), `score16`, `up16` (stride 16 -> 8),
    `score8`, and `final_up` (the only one whose shape differs between variants).
    """

    def __init__(
        self,
        name: str,
        in_channels: tuple[int, int, int],
        num_classes: int,
        learn_upsampling: bool = True,
    ) -> None:
        super().__init__()
        if name not in _FINAL_STRIDE:
            raise ValueError(f"unknown head {name!r}; choose one of {HEADS}")
        c8, c16, c32 = in_channels
        self.name = name
        self.score32 = nn.Conv2d(c32, num_classes, kernel_size=1)
        if name in ("fcn16s", "fcn8s"):
            self.up32 = _upsampler(num_classes, 2, learn_upsampling)
            self.score16 = _zero_score(c16, num_classes)
        if name == "fcn8s":
            self.up16 = _upsampler(num_classes, 2, learn_upsampling)
            self.score8 = _zero_score(c8, num_classes)
        self.final_up = _upsampler(num_classes, _FINAL_STRIDE[name], learn_upsampling)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """`features` holds `stride8`, `stride16`, `stride32` maps; returns full-res logits."""
        score = self.score32(features["stride32"])
        if self.name != "fcn32s":
            score = self.up32(score) + self.score16(features["stride16"])
        if self.name == "fcn8s":
            score = self.up16(score) + self.score8(features["stride8"])
        return self.final_up(score)


class AuxHead(nn.Module):
    """Auxiliary FCN head on the stride-16 features (as mmsegmentation's auxiliary FCNHead: 3x3
    conv, BN, ReLU, dropout, 1x1 scores), for an extra training loss (`model.aux_weight`). It
    lives beside the FCN, not in it: exports and inference never run it."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )

    def forward(self, stride16: Tensor, size: tuple[int, int]) -> Tensor:
        """Scores at stride 16, upsampled bilinearly to the padded input and cropped to `size`."""
        scores = self.block(stride16)
        padded = (stride16.shape[-2] * 16, stride16.shape[-1] * 16)
        up = nn.functional.interpolate(scores, size=padded, mode="bilinear", align_corners=False)
        return up[..., : size[0], : size[1]]
