"""Image/mask pairs of one split, from any layout: decoded, mapped to classes and checked up
front (every problem found, none skipped). Layouts (fcn/data/voc.py, fcn/data/folder.py) only
say which files pair up."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from fcn.core.errors import DataError
from fcn.data.labels import LabelSpec
from fcn.data.masks import MaskDecoder
from fcn.data.transforms import EvalTransform

# Splits this large are worth remembering as checked (SBD train_aug: 10,582 pairs, ~30 s).
VALIDATION_CACHE_MIN_PAIRS = 1000
_VALIDATION_VERSION = 2

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def read_any_image(path: Path) -> torch.Tensor:
    """uint8 3 x H x W RGB from any image torchvision or PIL decodes (grey and RGBA become
    RGB); DataError naming the file if it cannot be decoded."""
    try:
        image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        return image[0] if image.ndim == 4 else image
    except (RuntimeError, ValueError, OSError):
        pass
    try:
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(
            f"cannot decode image {path} ({err}): replace it with a valid image"
        ) from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class PairReport:
    """One pair checked: its problem (or None) and its pixels per class (index 255: void)."""

    problem: str | None
    pixels: np.ndarray | None  # int64[256]


class SegmentationDataset(Dataset):
    """Pairs named by `ids`; items are (image float32 3xHxW ImageNet-normalised, mask uint8 HxW
    with classes 0..C-1 and 255 void) after `transform(image_uint8, mask_uint8)`."""

    read_image: Callable[[Path], torch.Tensor] = staticmethod(read_any_image)

    def __init__(
        self,
        pairs: dict[str, tuple[Path, Path]],
        labels: LabelSpec,
        split: str,
        transform: Transform | None = None,
        source: str = "",
    ) -> None:
        self._pairs = pairs
        self.ids = list(pairs)
        self.labels = labels
        self.decoder = MaskDecoder(labels)
        self.split = split
        self.source = source  # where the pairing came from, for messages
        self.transform = transform if transform is not None else EvalTransform()

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def image_path(self, image_id: str) -> Path:
        return self._pairs[image_id][0]

    def label_path(self, image_id: str) -> Path:
        return self._pairs[image_id][1]

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: uint8 image 3xHxW and uint8 class mask HxW (255 void)."""
        image_id = self.ids[index]
        image = self.read_image(self.image_path(image_id))
        mask = torch.from_numpy(self.decoder.load(self.label_path(image_id)).copy())
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        return self.transform(image, mask)

    # -- checks -------------------------------------------------------------------------------

    def missing_files(self) -> list[str]:
        """Problems of pairs whose image or mask file is not there (one message per kind)."""
        problems = []
        for kind, path_of in (("image", self.image_path), ("mask", self.label_path)):
            missing = [i for i in self.ids if not path_of(i).is_file()]
            if missing:
                problems.append(self._missing_message(kind, missing))
        return problems

    def _missing_message(self, kind: str, missing: list[str]) -> str:
        first = ", ".join(str(self.image_path(i) if kind == "image" else self.label_path(i))
                          for i in missing[:3])  # fmt: skip
        return (
            f"{len(missing)} pairs of split {self.split!r} ({self.source}) have no {kind} file "
            f"(first: {first}): add the files or remove them from the split"
        )

    def validate(self, max_workers: int | None = None, cache_dir: Path | None = None) -> None:
        """Check every pair before training: files exist, decode, sizes agree, values known.

        Raises one DataError naming the first bad file (in split order) and the fix. With
        `cache_dir`, a split of at least VALIDATION_CACHE_MIN_PAIRS pairs that passed once is
        not decoded again while its files keep their sizes and modification times.
        """
        if not self.ids:
            raise DataError(self.empty_message())
        missing = self.missing_files()
        if missing:
            raise DataError(missing[0])
        stamp = None
        if cache_dir is not None and len(self.ids) >= self._cache_threshold():
            stamp = Path(cache_dir) / self._stamp_key()
            if stamp.is_file():
                return
        workers = max_workers or min(8, 2 * (os.cpu_count() or 1))
        # Decoding releases the GIL (libjpeg, zlib), so threads give real parallelism here.
        with ThreadPoolExecutor(workers) as pool:
            errors = list(pool.map(self._check_pair, self.ids))
        bad = [e for e in errors if e is not None]
        if bad:
            more = (
                f" ({len(bad) - 1} more bad pairs in split {self.split!r}; `fcn-data check` "
                "lists them all)"
                if len(bad) > 1
                else ""
            )
            raise DataError(f"{bad[0]}{more}")
        if stamp is not None:
            try:  # best effort: a read-only cache only costs the next run its check
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.write_text(f"{self.source} {self.split} ok\n")
            except OSError:
                pass

    def _cache_threshold(self) -> int:
        return VALIDATION_CACHE_MIN_PAIRS

    def empty_message(self) -> str:
        return f"split {self.split!r} ({self.source}) holds no pairs: check the split setting"

    def file_stats(self) -> list[tuple[int, int]]:
        """(size, mtime) of every file, image then mask per pair: what a cache key needs."""
        stats = []
        for image_id in self.ids:
            for path in (self.image_path(image_id), self.label_path(image_id)):
                st = os.stat(path)
                stats.append((st.st_size, st.st_mtime_ns))
        return stats

    def _stamp_key(self) -> str:
        """Names what was checked: pairs, classes and value map, every file's size+mtime."""
        desc = [_VALIDATION_VERSION, self.split, self.labels.fingerprint(), self.ids]
        desc += [[str(self.image_path(i)), str(self.label_path(i))] for i in self.ids[:1]]
        desc += [str(Path(self.source).resolve()) if self.source else "", self.file_stats()]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:32] + ".ok"

    def _check_pair(self, image_id: str) -> str | None:
        """One pair's problem as a message, or None; never raises for data problems."""
        return self.inspect_pair(image_id).problem

    def inspect_pair(self, image_id: str) -> PairReport:
        """Decode one pair: its problem, or its pixel count per class (255: void)."""
        image_path, label_path = self.image_path(image_id), self.label_path(image_id)
        try:
            image = self.read_image(image_path)
            mask, unknown = self.decoder.decode(label_path)
        except DataError as err:
            return PairReport(str(err), None)
        if tuple(mask.shape) != tuple(image.shape[1:]):
            return PairReport(
                f"label {label_path} is {mask.shape[0]}x{mask.shape[1]} but image "
                f"{image_path} is {image.shape[1]}x{image.shape[2]} (HxW): labels must match "
                f"their image's size",
                None,
            )
        if unknown:
            return PairReport(
                f"label {label_path} has values {unknown} that are neither a class nor void "
                f"(expected {self.labels.describe()}): {self.labels.fix_hint()}",
                None,
            )
        return PairReport(None, np.bincount(mask.ravel(), minlength=256).astype(np.int64))
