"""FCN models: `build_model(backbone, head, num_classes, ...)` and their building blocks."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fcn.core.errors import ConfigError
from fcn.core.validate import whole_number
from fcn.models.backbones import BACKBONES, build_backbone
from fcn.models.custom import custom_backbone, custom_head
from fcn.models.fcn import FCN
from fcn.models.heads import HEADS, FCNHead, bilinear_kernel
from fcn.models.timm_backbone import TimmBackbone

__all__ = [
    "BACKBONES",
    "FCN",
    "FCNHead",
    "HEADS",
    "bilinear_kernel",
    "build_model",
    "without_random_init",
]


def build_model(
    backbone: str,
    head: str,
    num_classes: int,
    pretrained: bool = False,
    weights_path: str | os.PathLike | None = None,
    learn_upsampling: bool = True,
    model_name: str | None = None,
    backbone_target: str | None = None,
    head_target: str | None = None,
) -> FCN:
    """Build an FCN: torchvision `backbone` (BACKBONES) + score `head` (HEADS).

    pretrained=True loads torchvision's ImageNet weights through the torch hub cache;
    weights_path loads a local torchvision state dict of the classification model (e.g.
    `torchvision.models.resnet18().state_dict()`), whole or without the classifier's keys
    (features only), and wins when both are given.
    learn_upsampling=False keeps the transposed convs frozen at bilinear interpolation.
    backbone="timm" builds timm model `model_name` (fcn/models/timm_backbone.py); its weights
    are timm's (pretrained) or a timm state dict / .safetensors file (weights_path).
    backbone_target / head_target: your own classes by path, replacing backbone / head
    (contract: fcn/models/custom.py).
    """
    if backbone_target:
        if pretrained or weights_path is not None:
            raise ConfigError(
                f"backbone._target_={backbone_target} loads its own weights: set "
                "backbone.pretrained=false and backbone.weights_path=null"
            )
    elif backbone == "timm":
        if not model_name:
            raise ConfigError(
                "backbone=timm needs backbone.model_name=NAME (a timm model, e.g. resnet18)"
            )
    elif backbone not in BACKBONES:
        raise ConfigError(
            f"unknown backbone.name={backbone!r}; choose one of: {', '.join(BACKBONES)}, timm"
        )
    if head not in HEADS and not head_target:
        raise ConfigError(f"unknown head.name={head!r}; choose one of: {', '.join(HEADS)}")
    whole_number(num_classes, "num_classes")
    body: nn.Module
    if backbone_target:
        body, backbone = custom_backbone(backbone_target), backbone_target
    elif backbone == "timm":
        body = TimmBackbone(model_name, pretrained=pretrained, weights_path=weights_path)
    else:
        body = build_backbone(backbone, pretrained=pretrained, weights_path=weights_path)
    score: nn.Module
    if head_target:
        score, head = custom_head(head_target, body.channels, num_classes), head_target
    else:
        score = FCNHead(head, body.channels, num_classes, learn_upsampling=learn_upsampling)
    return FCN(body, score, num_classes, backbone_name=backbone, head_name=head)


def without_random_init() -> TorchFunctionMode:
    """`with without_random_init(): model = ...`: `torch.nn.init` calls and random draws into a
    tensor (`normal_`, `uniform_`: what kaiming_normal_ & co. call directly) leave the tensor as
    allocated. Only for models whose every weight is about to be loaded from a checkpoint:
    their random initialisation would be thrown away (most of a VGG-16's build time on CPU).
    Lightning's `init_module(empty_init=True)` skips `torch.nn.init`, but needs a Trainer or
    Fabric.
    """
    return _SkipRandomInit()


class _SkipRandomInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        if func in (torch.Tensor.normal_, torch.Tensor.uniform_):
            return args[0]
        return func(*args, **kwargs)
