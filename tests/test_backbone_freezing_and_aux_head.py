"""backbone.freeze_bn, backbone.frozen_stages and the auxiliary stride-16 head
(model.aux_weight)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from fcn.core.errors import ConfigError
from fcn.deploy.model_files import rebuild_module
from fcn.models.freezing import stage_of_parameters
from fcn.training.module import SegmentationModule


def _fit_one_step(module, datamodule, tmp_path=None):
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return trainer


def _copy(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_freeze_bn_keeps_statistics_and_affine_weights(tiny_datamodule):
    module = SegmentationModule("resnet18", "fcn32s", 6, freeze_bn=True)
    before = _copy(module)
    _fit_one_step(module, tiny_datamodule)
    after = module.state_dict()
    bn = [k for k in before if ".bn" in k or "downsample.1" in k]
    assert bn and all(torch.equal(before[k], after[k]) for k in bn if "num_batches" not in k)
    assert not torch.equal(
        before["model.backbone.body.conv1.weight"], after["model.backbone.body.conv1.weight"]
    )
    module.train()
    images = torch.randn(2, 3, 64, 64)
    module.model.backbone(images)  # in train mode, yet the statistics stay
    assert torch.equal(
        after["model.backbone.body.bn1.running_mean"],
        before["model.backbone.body.bn1.running_mean"],
    )


def test_resnet_stages_are_found_by_what_each_stride_depends_on():
    module = SegmentationModule("resnet18", "fcn8s", 3)
    stages = stage_of_parameters(module.model.backbone)
    top = {name.split(".")[1]: stage for name, stage in stages.items()}
    assert top == {"conv1": 1, "bn1": 1, "layer1": 1, "layer2": 1, "layer3": 2, "layer4": 3}


def test_frozen_stages_stop_training_exactly_those_stages(tiny_datamodule):
    module = SegmentationModule("resnet18", "fcn8s", 6, frozen_stages=2)
    before = _copy(module)
    _fit_one_step(module, tiny_datamodule)
    after = module.state_dict()
    prefix = "model.backbone.body."
    for part in ("conv1.weight", "bn1.running_mean", "layer2.1.conv2.weight", "layer3.1.bn2.weight",
                 "layer3.1.bn2.running_var"):  # fmt: skip
        assert torch.equal(before[prefix + part], after[prefix + part]), part
    assert not torch.equal(
        before[prefix + "layer4.1.conv2.weight"], after[prefix + "layer4.1.conv2.weight"]
    )
    assert not torch.equal(
        before[prefix + "layer4.1.bn2.running_mean"], after[prefix + "layer4.1.bn2.running_mean"]
    )
    with pytest.raises(ConfigError, match="backbone.frozen_stages=4"):
        SegmentationModule("resnet18", "fcn8s", 6, frozen_stages=4)


def test_aux_head_trains_and_is_dropped_at_export(tiny_datamodule, tmp_path):
    torch.manual_seed(0)
    module = SegmentationModule("resnet18", "fcn8s", 6, aux_weight=0.4)
    before = _copy(module)
    trainer = _fit_one_step(module, tiny_datamodule)
    assert "train/aux_loss_step" in trainer.logged_metrics
    after = module.state_dict()
    aux = [k for k in before if k.startswith("aux_head.") and k.endswith("weight")]
    assert aux and all(not torch.equal(before[k], after[k]) for k in aux)
    assert not any(k.startswith("aux") for k in module.model.state_dict())  # what exports hold
    path = tmp_path / "aux.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = rebuild_module(path)
    images = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        assert rebuilt.model(images).shape == (1, 6, 97, 131)
        assert torch.equal(rebuilt.model(images), module.eval().model(images))


def test_forward_with_features_gives_forward_logits_and_aux_scores_at_input_size():
    torch.manual_seed(0)
    module = SegmentationModule("resnet18", "fcn16s", 6, aux_weight=0.5).eval()
    images = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        logits, features = module.model.forward_with_features(images)
        assert torch.equal(logits, module.model(images))
    aux = module.aux_head(features["stride16"], (70, 90))
    assert aux.shape == (2, 6, 70, 90)
