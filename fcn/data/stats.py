"""Per-class pixel and image counts of a split (void never counts), cached next to the data, and
the median-frequency class weights (`model.class_weights=auto`) made from them."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fcn.core.atomic import write_text_atomic
from fcn.core.classes import VOID_INDEX
from fcn.core.errors import ConfigError, DataError
from fcn.data.dataset import SegmentationDataset

CACHE_DIR = ".fcn-stats"  # beside the data: <root>/.fcn-stats/<key>.json
_VERSION = 1


@dataclass
class SplitStats:
    """One split's pairs, pixels and images per mask value (index 255: void), and problems."""

    split: str
    num_pairs: int
    pixels: np.ndarray  # int64[256]
    images: np.ndarray  # int64[256]
    image_pixels: np.ndarray  # int64[256]: labelled pixels of the images holding each value
    problems: list[str] = field(default_factory=list)


def scan(dataset: SegmentationDataset, progress: bool = False) -> SplitStats:
    """Decode every pair of `dataset`: its counts, and every problem found (none raised)."""
    problems = dataset.missing_files() if dataset.ids else [dataset.empty_message()]
    pixels, images, image_pixels = (np.zeros(256, dtype=np.int64) for _ in range(3))
    if problems:
        return SplitStats(dataset.split, len(dataset), pixels, images, image_pixels, problems)
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        reports = pool.map(dataset.inspect_pair, dataset.ids)
        bar = tqdm(
            reports, total=len(dataset), desc=dataset.split, unit="pair", disable=not progress
        )
        for report in bar:
            if report.problem is not None:
                problems.append(report.problem)
            else:
                present = report.pixels > 0
                pixels += report.pixels
                images += present
                image_pixels[present] += int(report.pixels[:VOID_INDEX].sum())
    return SplitStats(dataset.split, len(dataset), pixels, images, image_pixels, problems)


def cached_stats(dataset: SegmentationDataset, root: Path, progress: bool = False) -> SplitStats:
    """`scan`'s counts, read from `<root>/.fcn-stats/` when the files and classes are unchanged;
    a split with problems is a DataError (run `fcn-data check` to see them all)."""
    if not dataset.ids:
        raise DataError(dataset.empty_message())
    missing = dataset.missing_files()
    if missing:
        raise DataError(missing[0])
    key = dataset._stamp_key().removesuffix(".ok")
    places = [Path(root) / CACHE_DIR, _user_cache()]
    for place in places:
        path = place / f"{key}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            return SplitStats(
                dataset.split,
                saved["num_pairs"],
                np.array(saved["pixels"], dtype=np.int64),
                np.array(saved["images"], dtype=np.int64),
                np.array(saved["image_pixels"], dtype=np.int64),
            )
    stats = scan(dataset, progress)
    if stats.problems:
        more = f" ({len(stats.problems) - 1} more: `fcn-data check` lists them)"
        raise DataError(stats.problems[0] + (more if len(stats.problems) > 1 else ""))
    record = {
        "version": _VERSION,
        "split": stats.split,
        "num_pairs": stats.num_pairs,
        "pixels": stats.pixels.tolist(),
        "images": stats.images.tolist(),
        "image_pixels": stats.image_pixels.tolist(),
    }
    for place in places:  # beside the data; the user cache where the data is read-only
        try:
            place.mkdir(parents=True, exist_ok=True)
            write_text_atomic(place / f"{key}.json", json.dumps(record) + "\n")
            break
        except OSError:
            continue
    return stats


def _user_cache() -> Path:
    return Path(os.environ.get("FCN_CACHE", "~/.cache/fcn")).expanduser() / "stats"


def median_frequency_weights(stats: SplitStats, num_classes: int) -> list[float]:
    """Eigen & Fergus: freq_c = pixels of c / pixels of the images holding c, weight_c =
    median(freq) / freq_c. Classes absent from the split get weight 0 (no pixel to weigh)."""
    pixels = stats.pixels[:num_classes].astype(np.float64)
    present = stats.images[:num_classes] > 0
    if not present.any():
        raise DataError(f"split {stats.split!r} has no labelled pixel: no class weights to compute")
    freq = np.zeros(num_classes)
    freq[present] = pixels[present] / stats.image_pixels[:num_classes][present]
    median = float(np.median(freq[present]))
    weights = np.zeros(num_classes)
    weights[present] = median / freq[present]
    return [round(float(w), 6) for w in weights]


def resolve_class_weights(value: Any, datamodule: Any) -> list[float] | None:
    """`model.class_weights`: null, a list (one per class) or auto (from the train split)."""
    if value is None:
        return None
    if value == "auto":
        dataset = datamodule.train_dataset or datamodule.dataset("train")
        stats = cached_stats(dataset, datamodule.data_root)
        return median_frequency_weights(stats, datamodule.num_classes)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"model.class_weights must be null, auto or a list, got {value!r}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"model.class_weights must be numbers, got {list(value)}") from None


def format_stats(reports: Sequence[SplitStats], names: Sequence[str]) -> str:
    """Per class and split: share of labelled pixels (%) and images holding the class."""
    width = max(12, *(len(n) for n in names)) + 5
    header = "".join(f"{r.split + ' pixels %':>18}{'images':>9}" for r in reports)
    lines = [f"{'class':<{width}}{header}"]
    for value, name in [*enumerate(names), (VOID_INDEX, "void")]:
        row = ""
        for r in reports:
            labelled = max(int(r.pixels[: len(names)].sum()), 1)
            share = "-" if value == VOID_INDEX else f"{100 * r.pixels[value] / labelled:.3f}"
            row += f"{share:>18}{int(r.images[value]):>9,}"
        lines.append(f"{value:>3} {name:<{width - 4}}{row}")
    totals = "".join(f"{r.num_pairs:>18,}{'pairs':>9}" for r in reports)
    lines.append(f"{'':<{width}}{totals}")
    return "\n".join(lines)
