"""Checking a VOC tree as the loaders will, with pairs per split and pixels per class."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn.core.classes import VOID_INDEX, numbered_class_names
from fcn.core.errors import DataError
from fcn.data.sbd import AUG_LABEL_DIR, AUG_SPLIT, VOC_LABEL_DIR
from fcn.data.voc import SPLIT_DIR, VOCSegmentation, read_label, read_split

TRAIN_SPLITS = ("train", AUG_SPLIT)
EVAL_SPLIT = "val"


def label_dir_for(split: str) -> str:
    """The label folder the configs pair with a split (data=voc_aug: train_aug's own labels)."""
    return AUG_LABEL_DIR if split == AUG_SPLIT else VOC_LABEL_DIR


@dataclass(frozen=True)
class SplitReport:
    split: str
    label_dir: str
    num_pairs: int
    pixels: np.ndarray  # int64 [256]: labelled pixels per value over the split
    images: np.ndarray  # int64 [256]: images in which each value occurs


def check_split(
    root: Path, split: str, label_dir: str | None = None, num_classes: int = 21
) -> SplitReport:
    """Validate every pair of `split` (VOCSegmentation.validate) and count label values."""
    dataset = VOCSegmentation(root, split, label_dir or label_dir_for(split), num_classes)
    dataset.validate()
    paths = [dataset.label_path(i) for i in dataset.ids]
    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        counts = np.stack(
            list(pool.map(lambda p: np.bincount(read_label(p).ravel(), minlength=256), paths))
        )
    return SplitReport(
        split, dataset.label_dir, len(dataset), counts.sum(0), (counts > 0).sum(0).astype(np.int64)
    )


def default_splits(root: Path) -> list[str]:
    """train and val, and train_aug where `fcn-data aug` wrote it."""
    extra = [AUG_SPLIT] if (root / SPLIT_DIR / f"{AUG_SPLIT}.txt").is_file() else []
    return ["train", EVAL_SPLIT, *extra]


def check_tree(
    root: Path,
    splits: Sequence[str] | None = None,
    label_dir: str | None = None,
    num_classes: int = 21,
) -> list[SplitReport]:
    """Check `splits` (default: default_splits) and that no training split shares an id with val."""
    splits = list(splits or default_splits(root))
    reports = [check_split(root, s, label_dir, num_classes) for s in splits]
    if EVAL_SPLIT in splits:
        val = set(read_split(root, EVAL_SPLIT))
        for split in (s for s in splits if s in TRAIN_SPLITS):
            shared = sorted(set(read_split(root, split)) & val)
            if shared:
                raise DataError(
                    f"{root / SPLIT_DIR / (split + '.txt')} shares {len(shared)} ids with "
                    f"val.txt (e.g. {shared[0]}): remove them, or training sees val images"
                )
    return reports


def voc_class_names(num_classes: int) -> list[str]:
    """conf/data/voc.yaml's names for VOC's 21 classes; numbered names for other counts."""
    from omegaconf import OmegaConf

    from fcn.core.config_tree import config_dir

    names = list(OmegaConf.load(config_dir() / "data" / "voc.yaml").classes)
    return names if len(names) == num_classes else numbered_class_names(num_classes)


def format_reports(root: Path, reports: Sequence[SplitReport], num_classes: int = 21) -> str:
    """Pairs per split, then a table of labelled pixels (and images) per class and split."""
    lines = [
        f"VOC tree {root}: every pair decodes, sizes match, label values in "
        f"[0, {num_classes}) or 255 (void)"
    ]
    for r in reports:
        lines.append(f"  {r.split:<10} {r.num_pairs:>7,} pairs  (labels {r.label_dir}/)")
    names = [*voc_class_names(num_classes), "void"]
    values = [*range(num_classes), VOID_INDEX]
    width = max(len(n) for n in names) + 5
    header = "".join(f"{r.split + ' pixels':>16}{'images':>8}" for r in reports)
    lines += ["", f"{'class':<{width}}{header}"]
    for value, name in zip(values, names):
        row = "".join(f"{int(r.pixels[value]):>16,}{int(r.images[value]):>8,}" for r in reports)
        lines.append(f"{value:>3} {name:<{width - 4}}{row}")
    return "\n".join(lines)
