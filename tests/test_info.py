"""fcn-info: parameters and FLOPs per part, counted by FlopCounterMode, agree with the
network's own count and with torchvision's published figure for ResNet-18."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from fcn.core.config_tree import config_dir
from fcn.core.errors import ConfigError
from fcn.info import info


def _cfg(overrides: list[str]):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("info", [*overrides, "data.num_workers=0"])


def test_parts_add_up_and_the_backbone_matches_torchvision_published_flops(capsys):
    overrides = ["backbone=resnet18", "head=fcn8s", "input=[224,224]", "model.aux_weight=0.4"]
    rows = {part: (params, flops) for part, params, flops in info(_cfg(overrides))}
    out = capsys.readouterr().out
    assert "resnet18 + fcn8s" in out and "torchvision publishes 1.814 GFLOPs" in out
    backbone, head, network = rows["backbone"], rows["head"], rows["network"]
    assert backbone[0] + head[0] == network[0] and backbone[1] + head[1] == network[1]
    assert head[1] > 0 and rows["aux head (training only)"][1] > 0
    # torchvision's 1.814 G multiply-adds minus the classifier (512 x 1000), at 2 FLOPs each
    published = 2 * (1.814e9 - 512 * 1000)
    assert backbone[1] == pytest.approx(published, rel=1e-3)


def test_network_flops_are_one_forward_at_the_input_size():
    from fcn.models import build_model

    rows = info(_cfg(["backbone=resnet18", "head=fcn16s", "input=[97,131]"]))
    model = build_model("resnet18", "fcn16s", 6).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 97, 131))
    assert rows[-1][0] == "network" and rows[-1][2] == counter.get_total_flops()


def test_bad_input_size_is_one_line():
    with pytest.raises(ConfigError, match=r"input must be \[height, width\]"):
        info(_cfg(["input=[16,64]"]))
