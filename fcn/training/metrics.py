"""Segmentation metrics from one confusion matrix accumulated over a whole split, and the
split's per-pixel loss.

Per-batch averaging (as hand-written FCN loops often do) weights small images like large ones
and is wrong;
summing one confusion matrix and reducing it once is what the VOC benchmark defines. The
loss is kept the same way: summed over pixels, divided once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix

from fcn.core.classes import VOID_INDEX


def argmax_classes(logits: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """`logits.argmax(dim=1)` (N x C x H x W -> N x H x W `dtype`, first maximum on ties), faster.

    On CPU, argmax and max(dim).indices over the class dim take a slow generic kernel, while
    the value-only amax is vectorised. So: find the top value, mark the classes that reach it,
    and take a uint8 amax of descending class weights, which picks the lowest such class
    (README, Performance, has the timings). `dtype=torch.uint8` (up to 255 classes, what mask
    files hold) skips a conversion through int64.
    """
    num_classes = logits.shape[1]
    if num_classes > 255:  # the weights must fit in uint8
        return logits.argmax(dim=1).to(dtype)
    top = logits.amax(dim=1, keepdim=True)
    weights = torch.arange(num_classes, 0, -1, dtype=torch.uint8, device=logits.device)
    hits = (logits == top).view(torch.uint8)  # bool -> 0/1 bytes, no copy
    first = hits.mul_(weights.view(1, -1, 1, 1)).amax(dim=1)
    # NaN logits match nothing (first = 0): report the last class rather than an invalid one.
    return (num_classes - first.clamp_(min=1)).to(dtype)


class MeanPixelLoss(Metric):
    """Cross-entropy per non-void pixel over the whole split (synced across processes).

    A mean of per-batch means would weight a small image like a large one, and across DDP
    ranks it would be a mean of means; summing losses and pixels and dividing once is neither.
    (torchmetrics' weighted MeanMetric checks every update for NaN, a device sync per step;
    its `nan_strategy="disable"` drops the weights.)
    """

    full_state_update = False

    def __init__(self, ignore_index: int = VOID_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("loss_sum", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("pixels", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        target = target.long()
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
        self.loss_sum += loss.float()
        self.pixels += (target != self.ignore_index).sum()

    def compute(self) -> torch.Tensor:
        return self.loss_sum / self.pixels  # NaN for a split that is all void


def scores_from_confusion(confmat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reduce a C x C confusion matrix (rows = truth, cols = prediction) to the FCN metrics.

    Classes whose denominator is zero (absent from truth and prediction) are left out of the
    means; their per-class entries are NaN.
    """
    confmat = confmat.double()
    diag = confmat.diag()
    rows = confmat.sum(dim=1)
    cols = confmat.sum(dim=0)
    total = confmat.sum()
    union = rows + cols - diag
    class_acc = diag / rows  # NaN where the class never appears in the truth
    iou = diag / union  # NaN where the class appears nowhere
    freq = rows / total
    return {
        "pixel_acc": diag.sum() / total,
        "mean_acc": class_acc.nanmean(),
        "mIoU": iou.nanmean(),
        "fwIoU": (freq[rows > 0] * iou[rows > 0]).sum(),
        "per_class_iou": iou,
        "per_class_acc": class_acc,
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """A confusion matrix over the split (synced across processes by torchmetrics), void excluded.

    `update` takes logits (N x C x H x W) or class indices (N x H x W) and targets (N x H x W);
    `compute` returns the dict of `scores_from_confusion` plus the raw `confmat`.
    """

    def __init__(self, num_classes: int, ignore_index: int = VOID_INDEX) -> None:
        if ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} must be >= num_classes {num_classes}")
        # validate_args=False: the per-call value checks cost a full pass over every pixel.
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, validate_args=False)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == target.ndim + 1:
            preds = argmax_classes(preds)
        # One bincount of truth * C + prediction. Void truth lands in its own C bins past the
        # C x C matrix and is cut off, which saves torchmetrics' boolean-indexing pass. Any
        # other count past the matrix is a label that is neither a class nor void: refused.
        c, void = self.num_classes, self.ignore_index
        index = target.long() * c + preds.long()
        counts = torch.bincount(index.flatten(), minlength=c * c)
        unknown = counts[c * c :].sum() - counts[void * c : (void + 1) * c].sum()
        if unknown:
            raise ValueError(
                f"{int(unknown)} target pixels are neither a class in [0, {c}) nor void "
                f"({void}): check data.num_classes against the labels"
            )
        self.confmat += counts[: c * c].view(c, c)

    def compute(self) -> dict[str, torch.Tensor]:
        confmat = self.confmat
        return {**scores_from_confusion(confmat), "confmat": confmat}
