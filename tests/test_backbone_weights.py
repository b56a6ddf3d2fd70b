"""Backbone weights: local torchvision state dicts (whole or features-only) load safely, mismatches
are one line, pretrained weights come from the hub cache or say how to pass a file.
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

import fcn.models.backbones as backbones_mod
from fcn.core.errors import CheckpointError
from fcn.models import (
    build_model,
)
from fcn.models.backbones import VGGBackbone

NUM_CLASSES = 5


def test_weights_path_round_trip_resnet18(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", "fcn32s", NUM_CLASSES, weights_path=str(path))
    body = model.backbone.body.state_dict()
    saved = reference.state_dict()
    assert body and all(torch.equal(v, saved[k]) for k, v in body.items())
    # A fresh build draws different random weights, so the equality above is meaningful.
    other = build_model("resnet18", "fcn32s", NUM_CLASSES).backbone.body.state_dict()
    assert not torch.equal(other["conv1.weight"], saved["conv1.weight"])


def test_weights_path_wins_over_pretrained(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("weights_path must win over pretrained: no download")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    build_model("resnet18", "fcn8s", NUM_CLASSES, pretrained=True, weights_path=path)


def test_vgg16_fc6_fc7_take_reshaped_classifier_weights(tmp_path, monkeypatch):
    # The full vgg16 state dict is 528 MB: hand it to the loader in memory instead of on disk.
    torch.manual_seed(2)
    reference = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path / "vgg16.pth"
    path.write_bytes(b"stand-in")
    loaded = []

    def fake_load(f, map_location=None, weights_only=None):
        loaded.append((str(f), weights_only))
        return reference

    monkeypatch.setattr(backbones_mod.torch, "load", fake_load)
    model = build_model("vgg16", "fcn8s", NUM_CLASSES, weights_path=path)
    assert loaded == [(str(path), True)]
    body = model.backbone
    assert isinstance(body, VGGBackbone)
    assert torch.equal(body.fc6[0].weight, reference["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(body.fc6[0].bias, reference["classifier.0.bias"])
    assert torch.equal(body.fc7[0].weight, reference["classifier.3.weight"].view(4096, 4096, 1, 1))
    assert torch.equal(body.to_pool3[0].weight, reference["features.0.weight"])
    assert torch.equal(body.to_pool5[4].weight, reference["features.28.weight"])
    assert body.channels == (256, 512, 4096)


def test_missing_weights_path_names_the_path(tmp_path):
    path = tmp_path / "nope" / "resnet18.pth"
    with pytest.raises(CheckpointError, match="nope/resnet18.pth"):
        build_model("resnet18", "fcn32s", NUM_CLASSES, weights_path=str(path))


def test_wrong_backbone_state_dict_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match="resnet34.pth.*resnet18") as info:
        build_model("resnet18", "fcn32s", NUM_CLASSES, weights_path=path)
    assert "\n" not in str(info.value)


def test_unreadable_weights_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        build_model("resnet18", "fcn32s", NUM_CLASSES, weights_path=path)


@pytest.mark.parametrize(
    ("backbone", "filename"),
    [("resnet18", "resnet18-f37072fd.pth"), ("mobilenet_v2", "mobilenet_v2-b0353104.pth")],
)
def test_pretrained_offline_says_how_to_pass_weights_path(
    tmp_path, monkeypatch, backbone, filename
):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError) as info:
        build_model(backbone, "fcn32s", NUM_CLASSES, pretrained=True)
    message = str(info.value)
    assert "backbone.weights_path=" in message and filename in message
    assert f"backbone.name={backbone}" in message
    assert str(tmp_path) in message  # names the hub cache dir to copy the file into
    assert "\n" not in message
    assert not isinstance(info.value, urllib.error.URLError)


@pytest.mark.parametrize(
    ("backbone", "weights", "first_key"),
    [
        ("resnet18", torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "conv1.weight"),
        (
            "mobilenet_v2",
            torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
            "features.0.0.weight",
        ),
    ],
)
def test_pretrained_loads_from_hub(monkeypatch, backbone, weights, first_key):
    torch.manual_seed(3)
    reference = getattr(torchvision.models, backbone)(weights=None).state_dict()
    urls = []

    def cached(url, *args, **kwargs):
        urls.append(url)
        return reference

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", cached)
    model = build_model(backbone, "fcn32s", NUM_CLASSES, pretrained=True)
    assert urls == [weights.url]
    assert torch.equal(model.backbone.body.state_dict()[first_key], reference[first_key])


def _features_only(net: nn.Module, classifier: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if not k.startswith(f"{classifier}.")}


@pytest.mark.parametrize(
    ("backbone", "classifier"), [("resnet18", "fc"), ("mobilenet_v2", "classifier")]
)
def test_features_only_state_dict_loads(tmp_path, backbone, classifier):
    torch.manual_seed(4)
    state = _features_only(getattr(torchvision.models, backbone)(weights=None), classifier)
    path = tmp_path / f"{backbone}_features.pth"
    torch.save(state, path)
    body = build_model(backbone, "fcn8s", NUM_CLASSES, weights_path=path).backbone.body.state_dict()
    assert body.keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in body.items())


def test_imagenet_mobilenet_v2_features_file_loads(mobilenet_v2_features):
    state = torch.load(mobilenet_v2_features, map_location="cpu", weights_only=True)
    model = build_model("mobilenet_v2", "fcn8s", 21, weights_path=mobilenet_v2_features)
    body = model.backbone.body.state_dict()
    assert body.keys() == state.keys() and all(torch.equal(v, state[k]) for k, v in body.items())


def _wrong_shape(state: dict) -> dict:
    state = dict(state)
    state["features.3.conv.2.weight"] = state["features.3.conv.2.weight"][:1]
    return state


def _one_missing(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "features.5.conv.0.1.running_var"}


def _one_extra(state: dict) -> dict:
    return {**state, "features.19.weight": torch.zeros(3)}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_wrong_shape, "features.3.conv.2.weight"),
        (_one_missing, "features.5.conv.0.1.running_var"),
        (_one_extra, "features.19.weight"),
    ],
)
def test_other_mismatch_of_features_only_dict_is_refused(tmp_path, change, key):
    torch.manual_seed(5)
    state = _features_only(torchvision.models.mobilenet_v2(weights=None), "classifier")
    path = tmp_path / "mobilenet_v2_features.pth"
    torch.save(change(state), path)
    with pytest.raises(CheckpointError, match="mobilenet_v2_features.pth.*mobilenet_v2") as info:
        build_model("mobilenet_v2", "fcn8s", NUM_CLASSES, weights_path=path)
    assert key in str(info.value) and "\n" not in str(info.value)
