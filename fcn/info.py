"""`fcn-info [backbone=...] [head=...] [input=[H,W]]`: parameters and FLOPs of the configured
model, per part (backbone, head, auxiliary head), at one input size.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one forward pass of a
1 x 3 x H x W input, a multiply-add counting as 2 FLOPs. torchvision's published `_ops`
count it as 1 (ResNet-18: 1.814 at 224 x 224, 3.63 here), so the comparison line doubles
them. Nothing is trained or read.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcn.cli.entry import hydra_entry
from fcn.core.errors import ConfigError
from fcn.models.fcn import STRIDE


def model_info(module: Any, height: int, width: int) -> list[tuple[str, int, int]]:
    """(part, parameters, FLOPs) for the backbone, the head, the auxiliary head if any, and
    the whole network, at a 1 x 3 x height x width input."""
    model = module.model.eval()
    images = torch.zeros(1, 3, height, width)
    padded = torch.zeros(1, 3, height + (-height) % STRIDE, width + (-width) % STRIDE)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        features = model.backbone(padded)
    backbone_flops = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    total = counter.get_total_flops()
    rows = [
        ("backbone", _params(model.backbone), backbone_flops),
        ("head", _params(model.head), total - backbone_flops),
    ]
    aux = getattr(module, "aux_head", None)
    if aux is not None:  # training only: not part of the network's total
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            aux.eval()(features["stride16"], (height, width))
        rows.append(("aux head (training only)", _params(aux), counter.get_total_flops()))
    rows.append(("network", _params(model), total))
    return rows


def _params(part: nn.Module) -> int:
    return sum(p.numel() for p in part.parameters())


def published_gflops(backbone: str) -> float | None:
    """torchvision's published GFLOPs of the classification model at 224 x 224, if any."""
    from fcn.models.backbones import _SPECS

    spec = _SPECS.get(backbone)
    return None if spec is None else float(spec.weights.meta["_ops"])


def info(cfg: DictConfig) -> list[tuple[str, int, int]]:
    size = list(cfg.get("input") or [])
    if len(size) != 2 or min(int(s) for s in size) < STRIDE:
        raise ConfigError(f"input must be [height, width], each >= {STRIDE}, got {size}")
    height, width = int(size[0]), int(size[1])
    overrides = {"pretrained": False, "weights_path": None, "compile": False}
    module = instantiate(cfg.model, _convert_="all", **overrides)
    rows = model_info(module, height, width)
    name = module.model.backbone_name
    if cfg.model.get("model_name"):
        name = f"{name}/{cfg.model.model_name}"
    classes = module.model.num_classes
    print(f"{name} + {module.model.head_name}, {classes} classes, input {height}x{width}")
    print(f"{'part':<26}{'parameters':>14}{'GFLOPs':>10}")
    for part, params, flops in rows:
        print(f"{part:<26}{params:>14,}{flops / 1e9:>10.2f}")
    published = published_gflops(str(cfg.model.backbone))
    if published is not None and not cfg.model.get("backbone_target"):
        what = f"{cfg.model.backbone}'s classifier at 224x224"
        print(f"torchvision publishes {published} GFLOPs (multiply-adds) for {what}: "
              f"{2 * published:.2f} as counted here")  # fmt: skip
    return rows


@hydra_entry("info")
def main(cfg: DictConfig) -> None:
    info(cfg)


if __name__ == "__main__":
    main()
