"""backbone._target_ / head._target_: your own classes train, their checkpoints record the
class paths, and loading imports them only when their package is allowed."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from fcn.api import load_segmenter
from fcn.core.errors import CheckpointError, ConfigError
from fcn.deploy.model_files import rebuild_module
from fcn.training.module import SegmentationModule

BACKBONE = "helpers.custom_nets.TinyBackbone"
HEAD = "helpers.custom_nets.TinyHead"


@pytest.mark.parametrize("head_target", [None, HEAD])
def test_own_backbone_trains_a_step_and_loads_only_when_allowed(
    head_target, tiny_datamodule, tmp_path
):
    torch.manual_seed(0)
    module = SegmentationModule(
        "resnet18", "fcn8s", 6, backbone_target=BACKBONE, head_target=head_target
    )
    before = module.model.backbone.to8[0].weight.detach().clone()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=tiny_datamodule)
    assert not torch.equal(module.model.backbone.to8[0].weight, before)  # it trained
    path = tmp_path / "own.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["backbone_target"] == BACKBONE

    with pytest.raises(CheckpointError) as refused:
        rebuild_module(path)
    line = str(refused.value)
    assert "\n" not in line and BACKBONE in line and "allow_modules=[helpers]" in line
    with pytest.raises(CheckpointError, match="allow_modules"):
        load_segmenter(path)

    rebuilt = rebuild_module(path, allow_modules=["helpers"])
    images = torch.randn(2, 3, 97, 131)
    module.eval()
    with torch.no_grad():
        expected = module(images)
        assert expected.shape == (2, 6, 97, 131)
        assert torch.equal(rebuilt(images), expected)
    seg = load_segmenter(path, allow_modules=["helpers"])
    assert seg.info.backbone == BACKBONE


def test_own_backbone_contract_errors_are_one_line():
    with pytest.raises(ConfigError, match="backbone._target_=helpers.nowhere.Net: cannot import"):
        SegmentationModule("resnet18", "fcn8s", 3, backbone_target="helpers.nowhere.Net")
    with pytest.raises(ConfigError, match="not a torch.nn.Module class"):
        SegmentationModule("resnet18", "fcn8s", 3, backbone_target="helpers.custom_nets.F")
    with pytest.raises(ConfigError, match="backbone.weights_path=null"):
        SegmentationModule("resnet18", "fcn8s", 3, backbone_target=BACKBONE, pretrained=True)
