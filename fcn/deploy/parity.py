"""Parity on real data: an exported model against the PyTorch one, image by image over a split.

Random inputs (fcn-export's `check_sizes`) show the logits agree; a split shows that what
users read off the model, its masks and mIoU, survives the export with the same test-time
options (slide, flip, scales) applied around both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from fcn.core.errors import FCNError
from fcn.models.inference import InferenceOptions, Network, predict_logits
from fcn.training.metrics import SegmentationMetrics, argmax_classes


class ExportError(FCNError):
    """The exported model does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class SplitComparison:
    """Both models' mIoU on one split and how many predicted pixels differ between them."""

    split: str
    num_images: int
    reference_miou: float
    exported_miou: float
    differing_pixels: int
    total_pixels: int

    @property
    def miou_difference(self) -> float:
        if math.isnan(self.exported_miou) and math.isnan(self.reference_miou):
            return 0.0  # a split with no labelled pixel: nothing to differ on
        return abs(self.exported_miou - self.reference_miou)

    @property
    def differing_fraction(self) -> float:
        return self.differing_pixels / max(self.total_pixels, 1)

    def summary(self, name: str) -> str:
        return (
            f"verify {self.split} ({self.num_images} images): PyTorch mIoU="
            f"{self.reference_miou:.6f}, {name} mIoU={self.exported_miou:.6f} (|difference| "
            f"{self.miou_difference:.1e}); {self.differing_pixels:,} of {self.total_pixels:,} "
            f"mask pixels differ ({self.differing_fraction:.1e})"
        )


@torch.no_grad()
def compare_on_split(
    reference: Network,
    exported: Network,
    dataset: Dataset,
    num_classes: int,
    options: InferenceOptions,
    split: str,
    num_workers: int = 0,
) -> SplitComparison:
    """Run both networks on every image of `dataset` (whole, batch 1, as fcn-eval does)."""
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers)
    scores = [SegmentationMetrics(num_classes), SegmentationMetrics(num_classes)]
    differing = total = count = 0
    for images, masks in loader:
        ref = argmax_classes(predict_logits(reference, images, options))
        got = argmax_classes(predict_logits(exported, images, options))
        scores[0].update(ref, masks)
        scores[1].update(got, masks)
        differing += int((ref != got).sum())
        total += ref.numel()
        count += len(images)
    ref_miou, exp_miou = (float(s.compute()["mIoU"]) for s in scores)
    return SplitComparison(split, count, ref_miou, exp_miou, differing, total)


def check_comparison(
    result: SplitComparison, name: str, miou_tolerance: float, pixel_tolerance: float
) -> None:
    """ExportError with both numbers when mIoU or the masks differ beyond the tolerances."""
    problems = []
    if not result.miou_difference <= miou_tolerance:  # NaN fails too
        problems.append(f"mIoU differs by {result.miou_difference:.1e} > {miou_tolerance:g}")
    if not result.differing_fraction <= pixel_tolerance:
        problems.append(
            f"{result.differing_fraction:.1e} of mask pixels differ > {pixel_tolerance:g}"
        )
    if problems:
        raise ExportError(
            f"{result.summary(name)}: {' and '.join(problems)} (verify_miou_tolerance / "
            "verify_pixel_tolerance); the exported file is kept for inspection"
        )
