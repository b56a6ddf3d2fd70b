"""backbone=timm: any timm features_only model feeds the FCN heads at strides 8/16/32, exports
to ONNX and .pt2 with parity, rebuilds from its checkpoint, and loads local timm weights."""

from __future__ import annotations

import pytest
import torch

from fcn.core.errors import CheckpointError, ConfigError
from fcn.deploy.exporters import capture_program, save_onnx, save_program
from fcn.deploy.model_files import load_model, rebuild_module
from fcn.deploy.model_info import ModelInfo
from fcn.models import build_model
from fcn.models.timm_backbone import TimmBackbone

timm = pytest.importorskip("timm")

MODELS = ("resnet18", "mobilenetv3_small_050", "convnext_atto")


def _random_head(model_name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("timm", "fcn8s", 5, model_name=model_name).eval()
    for p in model.head.parameters():
        p.data.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("model_name", MODELS)
def test_timm_backbones_give_exact_output_sizes(model_name):
    model = _random_head(model_name)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 97, 131)).shape == (2, 5, 97, 131)
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 5, 64, 96)
    reductions = timm.create_model(model_name, features_only=True).feature_info.reduction()
    assert model.backbone.channels == tuple(
        timm.create_model(model_name, features_only=True).feature_info.channels()[
            max(i for i, r in enumerate(reductions) if r == s)
        ]
        for s in (8, 16, 32)
    )


@pytest.mark.parametrize(
    "model_name",
    ["convnext_atto", pytest.param("mobilenetv3_small_050", marks=pytest.mark.slow)],  # ~15 s
)
def test_timm_backbones_export_to_onnx_and_pt2_with_parity(model_name, tmp_path):
    model = _random_head(model_name)
    info = ModelInfo(
        f"timm/{model_name}", "fcn8s", tuple(f"c{i}" for i in range(5)), ((0, 0, 0),) * 5
    )
    program = capture_program(model)
    save_onnx(program, tmp_path / "m.onnx", info.to_metadata("onnx"), opset=18)
    save_program(program, tmp_path / "m.pt2", info.to_metadata("exported_program"))
    networks = {suffix: load_model(tmp_path / f"m.{suffix}") for suffix in ("onnx", "pt2")}
    assert networks["pt2"].info.backbone == f"timm/{model_name}"
    for h, w in ((97, 131), (64, 64)):
        images = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            expected = model(images)
        assert expected.abs().max() > 0.5
        for suffix, loaded in networks.items():
            with torch.no_grad():
                got = loaded.network(images)
            assert got.shape == expected.shape == (2, 5, h, w), suffix
            diff = float((got - expected).abs().max())
            assert diff <= 1e-4 * max(1.0, float(expected.abs().max())), (suffix, diff)


def test_timm_checkpoint_rebuilds_from_its_hyper_parameters(tmp_path):
    from fcn.training.module import SegmentationModule

    module = SegmentationModule("timm", "fcn16s", 3, model_name="mobilenetv3_small_050").eval()
    path = tmp_path / "m.ckpt"
    hp = dict(module.hparams)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, path)
    rebuilt = rebuild_module(path)
    assert type(rebuilt.model.backbone) is TimmBackbone
    assert rebuilt.model.backbone.model_name == "mobilenetv3_small_050"
    images = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), module(images))
    info = ModelInfo.from_module(rebuilt, hp)
    assert info.backbone == "timm/mobilenetv3_small_050"


def test_timm_weights_files_whole_features_only_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    full = timm.create_model("resnet18")
    torch.save(full.state_dict(), tmp_path / "whole.pth")
    torch.save({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")},
               tmp_path / "no_fc.pth")  # fmt: skip
    features = timm.create_model("resnet18", features_only=True)
    torch.save(features.state_dict(), tmp_path / "features.pth")
    save_file(full.state_dict(), tmp_path / "whole.safetensors")
    for name, source in [("whole.pth", full), ("no_fc.pth", full), ("features.pth", features),
                         ("whole.safetensors", full)]:  # fmt: skip
        body = TimmBackbone("resnet18", weights_path=tmp_path / name).body.state_dict()
        for key in ("conv1.weight", "layer4.1.bn2.running_var"):
            assert torch.equal(body[key], source.state_dict()[key]), name
    with pytest.raises(
        CheckpointError, match=r"weights_path=.*whole.pth does not match timm model resnet34"
    ):
        TimmBackbone("resnet34", weights_path=tmp_path / "whole.pth")


def test_timm_config_errors_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"strides \[16\], not at \[8, 32\]"):
        TimmBackbone("vit_tiny_patch16_224")
    with pytest.raises(ConfigError, match="'resnet_18x' is not a timm model"):
        TimmBackbone("resnet_18x")
    with pytest.raises(ConfigError, match="backbone.model_name"):
        build_model("timm", "fcn8s", 3)

    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("offline")
        return create(*args, **kwargs)

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError, match="no cached timm weights .* backbone.weights_path="):
        TimmBackbone("resnet18", pretrained=True)
