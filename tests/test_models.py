"""fcn.models: output sizes, bilinear init, zero skips, weight loading and its errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcn.core.errors import ConfigError
from fcn.models import (
    BACKBONES,
    FCN,
    HEADS,
    FCNHead,
    bilinear_kernel,
    build_model,
    without_random_init,
)

NUM_CLASSES = 5
# Models built once and shared by several tests (the others are freed after their first test).
REUSED = ("resnet18", "vgg16", "mobilenet_v2")


@pytest.fixture(scope="module")
def fresh_models() -> dict[tuple[str, str], FCN]:
    """One eval-mode model per backbone x head, built lazily and shared across tests."""
    torch.manual_seed(0)
    return {}


def _model(cache: dict, backbone: str, head: str) -> FCN:
    if (backbone, head) not in cache:
        cache[(backbone, head)] = build_model(backbone, head, NUM_CLASSES).eval()
    return cache[(backbone, head)]


def _run(model: nn.Module, h: int, w: int) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(1, 3, h, w))


# ---------------------------------------------------------------- building for a checkpoint


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_model_tensor_is_in_its_state_dict(backbone):
    # Checkpoint loading builds models under without_random_init, then sets every entry of the
    # state dict: a parameter or buffer outside it would keep uninitialised memory.
    for learn_upsampling in (True, False):
        with without_random_init():
            model = build_model(backbone, "fcn8s", NUM_CLASSES, learn_upsampling=learn_upsampling)
        tensors = {name for name, _ in model.named_parameters()}
        tensors |= {name for name, _ in model.named_buffers()}
        assert tensors == set(model.state_dict()), (backbone, learn_upsampling)


def test_without_random_init_skips_torch_nn_init_only_inside():
    with without_random_init():
        skipped = nn.init.constant_(torch.zeros(3), 5.0)
        drawn = nn.init.kaiming_normal_(torch.zeros(4, 3))  # calls Tensor.normal_ itself
        computed = torch.ones(3) * 2  # other torch functions still run
    assert skipped.tolist() == [0.0, 0.0, 0.0] and computed.tolist() == [2.0, 2.0, 2.0]
    assert not drawn.any()
    assert nn.init.constant_(torch.zeros(3), 5.0).tolist() == [5.0, 5.0, 5.0]


# ---------------------------------------------------------------- output size


@pytest.mark.parametrize("backbone", BACKBONES)
def test_exact_output_shape_every_backbone_and_head(fresh_models, backbone):
    # One build per backbone (vgg16 alone is 0.5 GB); the other heads share its backbone.
    model = _model(fresh_models, backbone, "fcn8s")
    assert (model.backbone_name, model.head_name, model.num_classes) == (backbone, "fcn8s", 5)
    for head in HEADS:
        score = FCNHead(head, model.backbone.channels, NUM_CLASSES)
        variant = FCN(model.backbone, score, NUM_CLASSES).eval()
        assert _run(variant, 64, 96).shape == (1, NUM_CLASSES, 64, 96), head
        assert _run(variant, 70, 99).shape == (1, NUM_CLASSES, 70, 99), head
    if backbone not in REUSED:
        del fresh_models[(backbone, "fcn8s")]  # free memory: only these are reused


@pytest.mark.parametrize("backbone", REUSED)
@pytest.mark.parametrize("size", [(321, 479), (375, 500)])
def test_exact_output_shape_voc_sizes(fresh_models, backbone, size):
    model = _model(fresh_models, backbone, "fcn8s")
    assert _run(model, *size).shape == (1, NUM_CLASSES, *size)


def test_batch_and_odd_sizes_resnet18(fresh_models):
    model = _model(fresh_models, "resnet18", "fcn16s")
    with torch.no_grad():
        assert model(torch.randn(2, 3, 97, 131)).shape == (2, NUM_CLASSES, 97, 131)
        assert model(torch.randn(1, 3, 32, 33)).shape == (1, NUM_CLASSES, 32, 33)


def test_padding_does_not_shift_predictions(fresh_models):
    # The pad is bottom/right: logits of an unaligned image are the crop of the aligned run
    # on the zero-padded image, so pixel (0, 0) stays at (0, 0).
    model = _model(fresh_models, "resnet18", "fcn8s")
    x = torch.randn(1, 3, 70, 99)
    with torch.no_grad():
        full = model(F.pad(x, (0, 29, 0, 26)))
        assert torch.allclose(model(x), full[..., :70, :99], atol=1e-5)


@pytest.mark.parametrize("size", [(31, 64), (64, 16)])
def test_too_small_input_is_a_clear_error(fresh_models, size):
    model = _model(fresh_models, "resnet18", "fcn32s")
    with pytest.raises(ValueError, match="at least 32"):
        _run(model, *size)


def test_jit_trace_at_one_size_runs_at_another(fresh_models):
    model = _model(fresh_models, "resnet18", "fcn8s")
    x_trace, x_other = torch.randn(1, 3, 70, 99), torch.randn(1, 3, 64, 96)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x_trace)
        assert torch.allclose(traced(x_other), model(x_other), atol=1e-5)
        assert traced(torch.randn(1, 3, 97, 131)).shape == (1, NUM_CLASSES, 97, 131)


def test_channels_last_matches(fresh_models):
    model = build_model("resnet18", "fcn8s", NUM_CLASSES).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-4)


@pytest.mark.slow
def test_onnx_export_with_dynamic_height_and_width(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = build_model("resnet18", "fcn8s", NUM_CLASSES).eval()
    dynamic = {"x": {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    path = tmp_path / "fcn.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 70, 99),), str(path), dynamic_shapes=dynamic)
    session = ort.InferenceSession(str(path))
    for h, w in [(64, 96), (97, 131)]:
        x = torch.randn(1, 3, h, w)
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-4)


# ---------------------------------------------------------------- bilinear kernel


@pytest.mark.parametrize("k", [3, 4, 16])
def test_bilinear_kernel_formula(k):
    weight = bilinear_kernel(3, 3, k)
    assert weight.shape == (3, 3, k, k)
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    for i in range(k):
        for j in range(k):
            expected = (1 - abs(i - center) / factor) * (1 - abs(j - center) / factor)
            for c in range(3):
                assert weight[c, c, i, j].item() == pytest.approx(expected)
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert torch.count_nonzero(weight[off_diagonal]) == 0


def test_bilinear_transposed_conv_matches_interpolate():
    up = nn.ConvTranspose2d(3, 3, kernel_size=4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(3, 3, 4))
        x = torch.rand(1, 3, 12, 17)
        ours = up(x)
        ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert ours.shape == ref.shape
    assert torch.allclose(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)


def test_head_upsamplers_start_bilinear():
    model = build_model("resnet18", "fcn8s", NUM_CLASSES)
    head = model.head
    assert torch.equal(head.up32.weight, bilinear_kernel(NUM_CLASSES, NUM_CLASSES, 4))
    assert torch.equal(head.up16.weight, bilinear_kernel(NUM_CLASSES, NUM_CLASSES, 4))
    assert torch.equal(head.final_up.weight, bilinear_kernel(NUM_CLASSES, NUM_CLASSES, 16))
    assert all(p.requires_grad for p in head.parameters())


def test_learn_upsampling_false_freezes_transposed_convs():
    model = build_model("resnet18", "fcn8s", NUM_CLASSES, learn_upsampling=False)
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 3
    assert all(not m.weight.requires_grad for m in ups)
    assert all(m.weight.grad is None for m in ups)
    assert model.head.score8.weight.requires_grad and model.head.score32.weight.requires_grad
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    assert all(m.weight.grad is None for m in ups)


# ---------------------------------------------------------------- zero-initialised skips


def _features(h: int = 64, w: int = 96, channels=(128, 256, 512)) -> dict[str, torch.Tensor]:
    return {
        "stride8": torch.randn(1, channels[0], h // 8, w // 8),
        "stride16": torch.randn(1, channels[1], h // 16, w // 16),
        "stride32": torch.randn(1, channels[2], h // 32, w // 32),
    }


@pytest.mark.parametrize("head_name", ["fcn16s", "fcn8s"])
def test_fresh_skip_scores_are_zero_then_matter(head_name):
    head = build_model("resnet18", head_name, NUM_CLASSES).head
    feats = _features()
    perturbed = dict(feats, stride8=feats["stride8"] + 3.0, stride16=feats["stride16"] * -2.0)
    with torch.no_grad():
        base = head(feats)
        assert base.shape == (1, NUM_CLASSES, 64, 96)
        assert torch.equal(head(perturbed), base)
        # Once the skip weights move off zero, the skip features change the output.
        skips = [head.score16] + ([head.score8] if head_name == "fcn8s" else [])
        for conv in skips:
            conv.weight.add_(0.01 * torch.randn_like(conv.weight))
        assert not torch.allclose(head(perturbed), head(feats))


def test_staged_weights_transfer_by_name():
    # 32s -> 16s -> 8s: every parameter of the coarser head but final_up has the same name and
    # shape in the finer one.
    heads = [build_model("resnet18", h, NUM_CLASSES).head for h in HEADS]
    for coarse, fine in zip(heads, heads[1:], strict=False):
        fine_state = fine.state_dict()
        for key, value in coarse.state_dict().items():
            assert key in fine_state
            if not key.startswith("final_up"):
                assert fine_state[key].shape == value.shape


# ---------------------------------------------------------------- weights


# ---------------------------------------------------------------- features-only weights


# ---------------------------------------------------------------- config errors


def test_unknown_backbone_lists_choices():
    with pytest.raises(ConfigError, match="backbone.name") as info:
        build_model("resnet9000", "fcn8s", NUM_CLASSES)
    assert all(name in str(info.value) for name in BACKBONES)


def test_unknown_head_lists_choices():
    with pytest.raises(ConfigError, match="head.name") as info:
        build_model("resnet18", "fcn4s", NUM_CLASSES)
    assert all(name in str(info.value) for name in HEADS)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_num_classes(bad):
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("resnet18", "fcn8s", bad)
