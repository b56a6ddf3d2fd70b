import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcn.training.metrics import (
    MeanPixelLoss,
    SegmentationMetrics,
    argmax_classes,
    scores_from_confusion,
)


def numpy_scores(preds: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    """An independent reference: the VOC metrics straight from their definitions."""
    valid = target != 255
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(target[valid], preds[valid]):
        cm[t, p] += 1
    rows, cols, diag = cm.sum(1), cm.sum(0), np.diag(cm)
    ious = [
        diag[c] / (rows[c] + cols[c] - diag[c]) for c in range(num_classes) if rows[c] + cols[c]
    ]
    accs = [diag[c] / rows[c] for c in range(num_classes) if rows[c]]
    fw = sum(
        rows[c] / cm.sum() * diag[c] / (rows[c] + cols[c] - diag[c])
        for c in range(num_classes)
        if rows[c]
    )
    return {
        "pixel_acc": diag.sum() / cm.sum(),
        "mean_acc": np.mean(accs),
        "mIoU": np.mean(ious),
        "fwIoU": fw,
        "cm": cm,
    }


def test_metrics_match_numpy_over_batches_with_void_and_absent_classes():
    gen = torch.Generator().manual_seed(0)
    num_classes = 7
    metric = SegmentationMetrics(num_classes)
    all_p, all_t = [], []
    for size in [(2, 9, 13), (1, 20, 7), (3, 5, 5)]:  # batches of different sizes
        target = torch.randint(0, 5, size, generator=gen)  # classes 5, 6 absent from the truth
        target[torch.rand(size, generator=gen) < 0.2] = 255
        preds = torch.randint(0, 6, size, generator=gen)  # class 6 absent everywhere
        logits = torch.nn.functional.one_hot(preds, num_classes).permute(0, 3, 1, 2).float()
        metric.update(logits, target)
        all_p.append(preds.flatten().numpy())
        all_t.append(target.flatten().numpy())
    got = metric.compute()
    ref = numpy_scores(np.concatenate(all_p), np.concatenate(all_t), num_classes)
    np.testing.assert_array_equal(got["confmat"].numpy(), ref["cm"])
    for key in ("pixel_acc", "mean_acc", "mIoU", "fwIoU"):
        assert got[key].item() == pytest.approx(ref[key], abs=1e-12), key
    assert torch.isnan(got["per_class_iou"][6])  # absent everywhere: left out of the mean
    assert got["per_class_iou"][5].item() == 0.0  # predicted but never true: IoU 0, counted


def test_split_level_not_batch_average():
    # One big image all right, one tiny image all wrong: the split score weights pixels.
    metric = SegmentationMetrics(2)
    metric.update(
        torch.zeros(1, 10, 10, dtype=torch.long), torch.zeros(1, 10, 10, dtype=torch.long)
    )
    metric.update(torch.zeros(1, 1, 1, dtype=torch.long), torch.ones(1, 1, 1, dtype=torch.long))
    assert metric.compute()["pixel_acc"].item() == pytest.approx(100 / 101)


def test_scores_from_confusion_by_hand():
    cm = torch.tensor([[3, 1], [0, 4]])
    s = scores_from_confusion(cm)
    assert s["pixel_acc"].item() == pytest.approx(7 / 8)
    assert s["per_class_iou"].tolist() == pytest.approx([3 / 4, 4 / 5])
    assert s["mean_acc"].item() == pytest.approx((3 / 4 + 1) / 2)
    assert s["fwIoU"].item() == pytest.approx(0.5 * 3 / 4 + 0.5 * 4 / 5)


@pytest.mark.parametrize("num_classes", [1, 2, 21, 300])
def test_argmax_classes_equals_argmax_with_ties(num_classes: int) -> None:
    torch.manual_seed(0)
    # Integer logits in a small range: many pixels have several classes at the maximum.
    logits = torch.randint(0, 4, (2, num_classes, 9, 11)).float()
    expected = logits.argmax(dim=1)
    got = argmax_classes(logits)
    assert got.dtype == torch.int64 and torch.equal(got, expected)
    floats = torch.randn(1, num_classes, 5, 6)
    assert torch.equal(argmax_classes(floats), floats.argmax(dim=1))


@pytest.mark.parametrize("num_classes", [1, 21, 255])
def test_argmax_classes_as_uint8_equals_argmax(num_classes: int) -> None:
    torch.manual_seed(0)
    logits = torch.randint(0, 4, (2, num_classes, 9, 11)).float()
    got = argmax_classes(logits, torch.uint8)
    assert got.dtype == torch.uint8 and torch.equal(got, logits.argmax(dim=1).to(torch.uint8))


def test_argmax_classes_stays_in_range_on_nan() -> None:
    logits = torch.full((1, 5, 2, 2), float("nan"))
    assert argmax_classes(logits).max() < 5


def test_void_index_must_lie_past_the_classes() -> None:
    # update() drops void by binning it past the C x C matrix, so void must be >= C.
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationMetrics(num_classes=300)
    metrics = SegmentationMetrics(num_classes=3)
    metrics.update(torch.tensor([[0, 1, 2, 2]]), torch.tensor([[0, 255, 2, 1]], dtype=torch.uint8))
    assert metrics.compute()["confmat"].tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_label_that_is_neither_class_nor_void_is_refused() -> None:
    metrics = SegmentationMetrics(num_classes=3)
    with pytest.raises(ValueError, match="neither a class"):
        metrics.update(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 7, 255]], dtype=torch.uint8))


def test_mean_pixel_loss_weights_pixels_not_batches() -> None:
    torch.manual_seed(0)
    big, tiny = torch.randn(1, 4, 10, 10), torch.randn(1, 4, 1, 1)
    big_t, tiny_t = torch.randint(0, 4, (1, 10, 10)), torch.randint(0, 4, (1, 1, 1))
    metric = MeanPixelLoss()
    metric.update(big, big_t)
    metric.update(tiny, tiny_t)
    metric.update(torch.randn(1, 4, 3, 3), torch.full((1, 3, 3), 255))  # all void: adds nothing
    # The split's mean over its 101 pixels, not the mean of the two batch means.
    pixels = torch.cat([big.flatten(2), tiny.flatten(2)], dim=2)  # 1 x C x 101
    truth = torch.cat([big_t.flatten(1), tiny_t.flatten(1)], dim=1)
    expected = F.cross_entropy(pixels, truth)
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)
    batch_mean = (F.cross_entropy(big, big_t) + F.cross_entropy(tiny, tiny_t)) / 2
    assert abs(batch_mean.item() - expected.item()) > 1e-3  # the test tells the two apart
