"""torchvision backbones cut into stride-8/16/32 feature extractors (their weights:
fcn/models/backbone_weights.py).

Every backbone maps `N x 3 x H x W` (H, W multiples of 32) to a dict with keys `stride8`,
`stride16`, `stride32` and records their channel counts in `.channels`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor

from fcn.models.backbone_weights import load_imagenet_weights, load_weights_file


class _Spec(NamedTuple):
    """How to cut one torchvision classifier into a stride-8/16/32 feature extractor."""

    ctor: Callable[..., nn.Module]
    weights: models.WeightsEnum  # ImageNet weights for backbone.pretrained=true
    channels: tuple[int, int, int]  # stride-8/16/32 channels
    # torchvision node -> feature name (None: VGGBackbone cuts the net itself)
    taps: dict[str, str] | None
    classifier: str  # the classification layers' key prefix: a features-only dict lacks them


_RESNET_TAPS = {"layer2": "stride8", "layer3": "stride16", "layer4": "stride32"}
# torchvision's `features` blocks ending at stride 8 / 16 / 32 (checked by running shapes);
# stride 32 is the last block (MobileNetV2: the 1x1 conv to 1280 channels).
_MOBILENET_V2_TAPS = {"features.6": "stride8", "features.13": "stride16", "features.18": "stride32"}
_MOBILENET_V3_TAPS = {"features.6": "stride8", "features.12": "stride16", "features.16": "stride32"}

_SPECS: dict[str, _Spec] = {
    "resnet18": _Spec(
        models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1, (128, 256, 512), _RESNET_TAPS, "fc"
    ),
    "resnet34": _Spec(
        models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1, (128, 256, 512), _RESNET_TAPS, "fc"
    ),
    "resnet50": _Spec(
        models.resnet50,
        models.ResNet50_Weights.IMAGENET1K_V1,
        (512, 1024, 2048),
        _RESNET_TAPS,
        "fc",
    ),
    "resnet101": _Spec(
        models.resnet101,
        models.ResNet101_Weights.IMAGENET1K_V1,
        (512, 1024, 2048),
        _RESNET_TAPS,
        "fc",
    ),
    "vgg16": _Spec(
        models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, (256, 512, 4096), None, "classifier"
    ),
    "mobilenet_v2": _Spec(
        models.mobilenet_v2,
        models.MobileNet_V2_Weights.IMAGENET1K_V1,
        (32, 96, 1280),
        _MOBILENET_V2_TAPS,
        "classifier",
    ),
    "mobilenet_v3_large": _Spec(
        models.mobilenet_v3_large,
        models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        (40, 112, 960),
        _MOBILENET_V3_TAPS,
        "classifier",
    ),
}
BACKBONES = tuple(_SPECS)


class TappedBackbone(nn.Module):
    """A torchvision classifier cut after its stride-32 block (no pooling/classifier), returning
    the outputs of the `taps` nodes; `body` keeps torchvision's key names."""

    def __init__(self, net: nn.Module, taps: dict[str, str], channels: tuple[int, int, int]):
        super().__init__()
        self.body = create_feature_extractor(net, return_nodes=taps)
        self.channels = channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.body(x)


class VGGBackbone(nn.Module):
    """VGG16 cut at pool3/pool4/pool5, then fc6/fc7 convolutionalized as in the FCN paper.

    fc6 is a 7x7 conv (padding 3 keeps the stride-32 grid, where the paper pads the input by
    100 and crops instead) and fc7 a 1x1 conv, both taking the classifier's Linear weights.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        feats = net.features
        # torchvision vgg16.features: max pools sit at indices 4, 9, 16, 23, 30.
        self.to_pool3 = feats[:17]
        self.to_pool4 = feats[17:24]
        self.to_pool5 = feats[24:31]
        fc6 = nn.Conv2d(512, 4096, kernel_size=7, padding=3)
        fc7 = nn.Conv2d(4096, 4096, kernel_size=1)
        linear6, linear7 = net.classifier[0], net.classifier[3]
        with torch.no_grad():
            fc6.weight.copy_(linear6.weight.view(4096, 512, 7, 7))
            fc6.bias.copy_(linear6.bias)
            fc7.weight.copy_(linear7.weight.view(4096, 4096, 1, 1))
            fc7.bias.copy_(linear7.bias)
        self.fc6 = nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout2d())
        self.fc7 = nn.Sequential(fc7, nn.ReLU(inplace=True), nn.Dropout2d())
        self.channels = (256, 512, 4096)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        fc7 = self.fc7(self.fc6(self.to_pool5(pool4)))
        return {"stride8": pool3, "stride16": pool4, "stride32": fc7}


def build_backbone(
    name: str, pretrained: bool = False, weights_path: str | os.PathLike | None = None
) -> nn.Module:
    """Build backbone `name` (one of BACKBONES); weights_path wins over pretrained.

    Raises KeyError for an unknown name (build_model turns it into a ConfigError).
    """
    spec = _SPECS[name]
    net = spec.ctor(weights=None)
    if weights_path is not None:
        path = os.fspath(weights_path)
        load_weights_file(net, path, name, spec.classifier)
    elif pretrained:
        load_imagenet_weights(net, spec.weights, name, spec.classifier)
    if spec.taps is None:
        return VGGBackbone(net)
    return TappedBackbone(net, spec.taps, spec.channels)
