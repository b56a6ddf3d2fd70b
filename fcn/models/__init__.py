"""FCN models: `build_model(backbone, head, num_classes, ...)` and their building blocks."""

from __future__ import annotations

import os

from torch import nn

from fcn.errors import ConfigError
from fcn.models.backbones import BACKBONES, build_backbone
from fcn.models.fcn import FCN
from fcn.models.heads import HEADS, FCNHead, bilinear_kernel

__all__ = ["BACKBONES", "FCN", "FCNHead", "HEADS", "bilinear_kernel", "build_model"]


def build_model(
    backbone: str,
    head: str,
    num_classes: int,
    pretrained: bool = False,
    weights_path: str | os.PathLike | None = None,
    learn_upsampling: bool = True,
) -> FCN:
    """Build an FCN: torchvision `backbone` (BACKBONES) + score `head` (HEADS).

    pretrained=True loads torchvision's ImageNet weights through the torch hub cache;
    weights_path loads a local torchvision state dict of the classification model (e.g.
    `torchvision.models.resnet18().state_dict()`), whole or without the classifier's keys
    (features only), and wins when both are given.
    learn_upsampling=False keeps the transposed convs frozen at bilinear interpolation.
    """
    if backbone not in BACKBONES:
        raise ConfigError(
            f"unknown backbone.name={backbone!r}; choose one of: {', '.join(BACKBONES)}"
        )
    if head not in HEADS:
        raise ConfigError(f"unknown head.name={head!r}; choose one of: {', '.join(HEADS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    body: nn.Module = build_backbone(backbone, pretrained=pretrained, weights_path=weights_path)
    score = FCNHead(head, body.channels, num_classes, learn_upsampling=learn_upsampling)
    return FCN(body, score, num_classes, backbone_name=backbone, head_name=head)
