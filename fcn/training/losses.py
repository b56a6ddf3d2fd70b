"""Training losses (`conf/loss/`): cross-entropy, Dice, focal, Lovasz-softmax, OHEM and sums.

Each takes `N x C x H x W` logits and `N x H x W` int64 targets, ignores the void label
exactly, and gives 0 (with zero gradient, no NaN) for a batch whose pixels are all void. Dice,
focal and Lovasz follow segmentation_models_pytorch's multiclass definitions
(tests/test_losses.py checks them against it); OHEM follows mmsegmentation's pixel sampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcn.core.errors import ConfigError
from fcn.core.validate import whole_number

LOSSES = ("ce", "dice", "focal", "lovasz", "ohem", "sum")


def _zero(logits: Tensor) -> Tensor:
    """A zero loss still attached to the graph (every gradient 0) for an all-void batch."""
    return logits.sum() * 0.0


class _Loss(nn.Module):
    def __init__(self, ignore_index: int, weight: Tensor | None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        # Not persistent: the weights are a hyper-parameter, checkpoints keep their old keys.
        self.register_buffer("weight", weight, persistent=False)

    def _class_mean(self, per_class: Tensor) -> Tensor:
        if self.weight is None:
            return per_class.mean()
        return (per_class * self.weight).sum() / self.weight.sum()


class CrossEntropy(_Loss):
    """F.cross_entropy (mean over non-void pixels, class weights, label smoothing)."""

    def __init__(self, ignore_index: int, weight: Tensor | None = None, label_smoothing=0.0):
        super().__init__(ignore_index, weight)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ConfigError(
                f"loss.label_smoothing={label_smoothing}: a value in [0, 1), e.g. 0.1"
            )
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        # cross_entropy's mean over zero pixels is 0/0 = NaN, in value and in gradient.
        if not (target != self.ignore_index).any():
            return _zero(logits)
        return F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class Dice(_Loss):
    """1 - soft Dice per class over the batch, classes absent from the truth counting 0."""

    def __init__(self, ignore_index: int, weight: Tensor | None = None, smooth=0.0, eps=1e-7):
        super().__init__(ignore_index, weight)
        self.smooth, self.eps = float(smooth), float(eps)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        c = logits.shape[1]
        valid = (target != self.ignore_index).unsqueeze(1)
        probs = logits.log_softmax(dim=1).exp() * valid
        truth = F.one_hot(target.masked_fill(~valid[:, 0], 0), c).movedim(-1, 1) * valid
        truth = truth.to(probs.dtype)
        dims = (0, 2, 3)
        inter = (probs * truth).sum(dims)
        card = (probs + truth).sum(dims)
        score = (inter + self.smooth) / (card / 2 + self.smooth).clamp_min(self.eps)
        per_class = (1 - score) * (truth.sum(dims) > 0)
        return self._class_mean(per_class)


class Focal(_Loss):
    """Sigmoid focal loss per class (one against the rest), mean over non-void pixels."""

    def __init__(
        self, ignore_index: int, weight: Tensor | None = None, gamma=2.0, alpha=None
    ) -> None:
        super().__init__(ignore_index, weight)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _zero(logits)
        x = logits.movedim(1, -1)[valid]  # P x C
        truth = F.one_hot(target[valid], logits.shape[1]).to(x.dtype)
        logpt = F.binary_cross_entropy_with_logits(x, truth, reduction="none")
        loss = (1.0 - torch.exp(-logpt)).pow(self.gamma) * logpt
        if self.alpha is not None:
            loss = loss * (self.alpha * truth + (1 - self.alpha) * (1 - truth))
        return self._class_mean(loss.mean(dim=0))


class Lovasz(_Loss):
    """Lovasz-softmax over the batch, averaged over the classes present in the truth."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _zero(logits)
        probs = logits.softmax(dim=1).movedim(1, -1)[valid]  # P x C
        fg = F.one_hot(target[valid], logits.shape[1]).to(probs.dtype)
        errors, order = (fg - probs).abs().sort(dim=0, descending=True)
        fg_sorted = fg.gather(0, order)
        total = fg_sorted.sum(dim=0)
        inter = total - fg_sorted.cumsum(dim=0)
        union = total + (1 - fg_sorted).cumsum(dim=0)
        jaccard = 1.0 - inter / union
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
        per_class = (errors * grad).sum(dim=0)
        present = total > 0
        return per_class[present].mean()


class OHEMCrossEntropy(_Loss):
    """Cross-entropy over the hardest non-void pixels, as mmsegmentation's OHEMPixelSampler:
    a pixel counts when its true class's probability is below max(thresh, the
    (min_kept * batch)-th smallest such probability); the mean is over the pixels kept."""

    def __init__(
        self, ignore_index: int, weight: Tensor | None = None, thresh=0.7, min_kept=100000
    ) -> None:
        super().__init__(ignore_index, weight)
        self.min_kept = whole_number(min_kept, "loss.min_kept", minimum=0)
        if not 0.0 < float(thresh) <= 1.0:
            raise ConfigError(f"loss.thresh={thresh}: a probability in (0, 1], e.g. 0.7")
        self.thresh = float(thresh)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _zero(logits)
        with torch.no_grad():
            probs = logits.softmax(dim=1).gather(1, target.masked_fill(~valid, 0).unsqueeze(1))
            prob = probs[:, 0][valid]
            ranked = prob.sort().values
            kept = min(self.min_kept * target.shape[0], ranked.numel() - 1)
            threshold = max(float(ranked[kept]), self.thresh)
            hard = torch.zeros_like(valid)
            hard[valid] = prob < threshold
        if not hard.any():
            return _zero(logits)
        return F.cross_entropy(
            logits, target.masked_fill(~hard, self.ignore_index), weight=self.weight,
            ignore_index=self.ignore_index,
        )  # fmt: skip


class WeightedSum(nn.Module):
    """sum(weight_i * loss_i) (`loss=ce_dice`: `loss.terms.dice.weight=0.5`)."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList(m for _, m in terms)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return sum(w * m(logits, target) for w, m in zip(self.weights, self.terms))


_CLASSES: dict[str, type[_Loss]] = {
    "ce": CrossEntropy,
    "dice": Dice,
    "focal": Focal,
    "lovasz": Lovasz,
    "ohem": OHEMCrossEntropy,
}


def build_loss(
    cfg: Mapping[str, Any] | None, ignore_index: int, class_weights: Tensor | None = None
) -> nn.Module:
    """The loss `cfg` names (`name` plus its keys; None: plain cross-entropy), with
    model.class_weights where the loss takes them."""
    cfg = dict(cfg or {"name": "ce"})
    name = cfg.pop("name", None)
    if name == "sum":
        terms = cfg.pop("terms", None) or {}
        if cfg or not isinstance(terms, Mapping) or not terms:
            raise ConfigError(
                "loss=sum takes only `terms`: a mapping loss name -> {weight: W, its keys}, "
                "e.g. loss.terms={ce: {weight: 1.0}, dice: {weight: 1.0}}"
            )
        built = []
        for term, kwargs in terms.items():
            kwargs = dict(kwargs or {})
            weight = kwargs.pop("weight", 1.0)
            term_loss = build_loss({"name": term, **kwargs}, ignore_index, class_weights)
            built.append((weight, term_loss))
        return WeightedSum(built)
    if name not in _CLASSES:
        raise ConfigError(f"unknown loss.name={name!r}; choose one of: {', '.join(LOSSES)}")
    if name == "lovasz" and class_weights is not None:
        raise ConfigError(
            "loss=lovasz takes no model.class_weights (it averages classes equally): set "
            "model.class_weights=null or choose another loss"
        )
    weight = None if class_weights is None else class_weights.detach().float().clone()
    try:
        return _CLASSES[name](ignore_index, weight, **cfg)
    except TypeError as err:
        raise ConfigError(f"loss={name}: {err}; see conf/loss/{name}.yaml for its keys") from None
