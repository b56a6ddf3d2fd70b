"""conf/loss/: every loss against segmentation_models_pytorch (or mmsegmentation's OHEM rule)
on random logits with void pixels, and on an all-void batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fcn.core.classes import VOID_INDEX
from fcn.core.errors import ConfigError
from fcn.training.losses import build_loss

smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")

C = 5
CONF_LOSS = Path(__file__).resolve().parents[1] / "conf" / "loss"


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, C, 9, 11, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, C - 1, (2, 9, 11), generator=g)  # class C-1 absent
    target[torch.rand(2, 9, 11, generator=g) < 0.3] = VOID_INDEX
    return logits, target


def _ohem_reference(logits, target, thresh, min_kept):
    """mmsegmentation's OHEMPixelSampler (thresh mode), then CE averaged over kept pixels."""
    valid = target != VOID_INDEX
    tmp = target.clone().unsqueeze(1)
    tmp[tmp == VOID_INDEX] = 0
    prob = F.softmax(logits, dim=1).gather(1, tmp).squeeze(1)
    sort_prob, _ = prob[valid].sort()
    batch_kept = min_kept * target.shape[0]
    min_threshold = sort_prob[min(batch_kept, sort_prob.numel() - 1)]
    threshold = max(float(min_threshold), thresh)
    weight = torch.zeros_like(prob)
    weight[valid] = (prob[valid] < threshold).to(prob.dtype)
    ce = F.cross_entropy(logits, target, ignore_index=VOID_INDEX, reduction="none")
    return (ce * weight).sum() / weight.sum()


WEIGHTS = torch.tensor([0.5, 1.0, 2.0, 1.5, 3.0], dtype=torch.float64)
CASES = {
    "ce": ({"name": "ce"}, None, lambda x, t: F.cross_entropy(x, t, ignore_index=VOID_INDEX)),
    "ce_weighted_smoothed": (
        {"name": "ce", "label_smoothing": 0.1},
        WEIGHTS,
        lambda x, t: F.cross_entropy(
            x, t, weight=WEIGHTS, ignore_index=VOID_INDEX, label_smoothing=0.1
        ),
    ),
    "dice": (
        {"name": "dice"},
        None,
        smp_losses.DiceLoss("multiclass", ignore_index=VOID_INDEX, smooth=0.0),
    ),
    "dice_weighted": (
        {"name": "dice", "smooth": 1.0},
        WEIGHTS,
        smp_losses.DiceLoss(
            "multiclass", ignore_index=VOID_INDEX, smooth=1.0, class_weights=WEIGHTS.tolist()
        ),
    ),
    "focal": (
        {"name": "focal", "gamma": 2.0, "alpha": 0.25},
        None,
        smp_losses.FocalLoss("multiclass", alpha=0.25, gamma=2.0, ignore_index=VOID_INDEX),
    ),
    # smp's Lovasz runs in float32 only (its gradient of the sorted errors is cast to float)
    "lovasz": (
        {"name": "lovasz"},
        None,
        lambda x, t: smp_losses.LovaszLoss("multiclass", ignore_index=VOID_INDEX)(x.float(), t),
    ),
    "ohem_threshold": (
        {"name": "ohem", "thresh": 0.7, "min_kept": 10},
        None,
        lambda x, t: _ohem_reference(x, t, 0.7, 10),
    ),
    "ohem_min_kept": (
        {"name": "ohem", "thresh": 0.05, "min_kept": 60},
        None,
        lambda x, t: _ohem_reference(x, t, 0.05, 60),
    ),
    "ce_dice": (
        {"name": "sum", "terms": {"ce": {"weight": 1.0}, "dice": {"weight": 0.5}}},
        None,
        lambda x, t: (
            F.cross_entropy(x, t, ignore_index=VOID_INDEX)
            + 0.5 * smp_losses.DiceLoss("multiclass", ignore_index=VOID_INDEX)(x, t)
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loss_matches_reference_with_void_pixels(case):
    cfg, weights, reference = CASES[case]
    loss = build_loss(cfg, VOID_INDEX, weights).double()
    for seed in range(3):
        logits, target = _batch(seed)
        ours, ref = loss(logits, target), reference(logits, target)
        assert torch.allclose(ours, torch.as_tensor(ref, dtype=ours.dtype), atol=1e-5, rtol=0)
        # void pixels have no say: changing their logits changes nothing
        moved = logits.clone()
        moved.masked_fill_((target == VOID_INDEX).unsqueeze(1), 50.0)
        assert torch.allclose(loss(moved, target), ours, atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_all_void_batch_gives_zero_loss_and_gradient(case):
    cfg, weights, _ = CASES[case]
    logits = torch.randn(2, C, 9, 11, dtype=torch.float64, requires_grad=True)
    target = torch.full((2, 9, 11), VOID_INDEX)
    value = build_loss(cfg, VOID_INDEX, weights).double()(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_ohem_keeps_only_hard_pixels():
    logits, target = _batch()
    hard_only = build_loss({"name": "ohem", "thresh": 0.7, "min_kept": 1}, VOID_INDEX)
    plain = build_loss({"name": "ce"}, VOID_INDEX)
    assert hard_only(logits, target) > plain(logits, target)


def test_default_loss_is_todays_cross_entropy_bit_for_bit():
    logits, target = _batch()
    logits = logits.float()
    weights = WEIGHTS.float()
    ours = build_loss(None, VOID_INDEX, weights)(logits, target)
    assert torch.equal(ours, F.cross_entropy(logits, target, weight=weights, ignore_index=255))


def test_bad_loss_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="loss.name='tversky'"):
        build_loss({"name": "tversky"}, VOID_INDEX)
    with pytest.raises(ConfigError, match="conf/loss/dice.yaml"):
        build_loss({"name": "dice", "gamma": 2}, VOID_INDEX)
    with pytest.raises(ConfigError, match="model.class_weights=null"):
        build_loss({"name": "lovasz"}, VOID_INDEX, WEIGHTS)


@pytest.mark.parametrize("option", sorted(p.stem for p in CONF_LOSS.glob("*.yaml")))
def test_every_loss_option_builds_from_the_config(option):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(CONF_LOSS.parent), version_base="1.3"):
        cfg = compose("train", [f"loss={option}"])
    loss = build_loss(OmegaConf.to_container(cfg.model.loss), VOID_INDEX)
    logits, target = _batch()
    assert torch.isfinite(loss(logits.float(), target))


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"name": "ohem", "min_kept": -1}, "loss.min_kept"),
        ({"name": "ohem", "thresh": 1.5}, "loss.thresh"),
        ({"name": "ce", "label_smoothing": 1.0}, "loss.label_smoothing"),
    ],
)
def test_out_of_range_loss_settings_are_one_config_error_naming_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key):
        build_loss(cfg, 255)
