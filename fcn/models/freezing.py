"""`backbone.freeze_bn` and `backbone.frozen_stages` for any backbone (torchvision, timm, yours).

A backbone's stages are found by what its outputs depend on, not by layer names: stage 1 is
every parameter the stride-8 map depends on, stage 2 what the stride-16 map adds, stage 3 what
the stride-32 map adds (for a ResNet: stem + layer1 + layer2, layer3, layer4).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from fcn.core.errors import ConfigError

STAGE_KEYS = ("stride8", "stride16", "stride32")


def stage_of_parameters(backbone: nn.Module) -> dict[str, int]:
    """Parameter name -> its stage (1, 2 or 3; parameters no output depends on are absent)."""
    named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    was_training = backbone.training
    backbone.eval()  # no running-stat update from the probe
    try:
        with torch.enable_grad():
            out = backbone(torch.zeros(1, 3, 64, 64))
            stages: dict[str, int] = {}
            for stage, key in enumerate(STAGE_KEYS, start=1):
                grads = torch.autograd.grad(
                    out[key].sum(), [p for _, p in named], retain_graph=True, allow_unused=True
                )
                for (name, _), grad in zip(named, grads):
                    if grad is not None:
                        stages.setdefault(name, stage)
    finally:
        backbone.train(was_training)
    return stages


def freeze_backbone(backbone: nn.Module, freeze_bn: bool, frozen_stages: int) -> list[nn.Module]:
    """Stop training the first `frozen_stages` stages (0-3) and, with `freeze_bn`, every batch
    norm's statistics and affine weights: those norms run in eval mode whatever mode the model
    is put in (a forward pre-hook: Lightning restores modules' modes one by one, past any
    `.train()` override). Returns them."""
    if frozen_stages not in (0, 1, 2, 3):
        raise ConfigError(
            f"backbone.frozen_stages={frozen_stages}: give 0 (none) to 3 (stride-8, -16 and "
            "-32 stages all frozen)"
        )
    frozen_names: set[str] = set()
    if frozen_stages:
        stages = stage_of_parameters(backbone)
        frozen_names = {n for n, s in stages.items() if s <= frozen_stages}
        for name, param in backbone.named_parameters():
            if name in frozen_names:
                param.requires_grad_(False)
    held: list[nn.Module] = []
    for module_name, module in backbone.named_modules():
        if not isinstance(module, _BatchNorm):
            continue
        own = [f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)]
        if freeze_bn or (own and all(n in frozen_names for n in own)):
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
            module.register_forward_pre_hook(_stay_in_eval)
            held.append(module)
    return held


def _stay_in_eval(module: nn.Module, _args) -> None:
    module.training = False
