"""A PASCAL VOC-layout segmentation dataset: index or RGB-colormap labels, checked up front."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from fcn.core.classes import VOID_COLOR, VOID_INDEX, voc_colormap
from fcn.core.errors import DataError
from fcn.data.dataset import SegmentationDataset, Transform
from fcn.data.labels import LabelSpec
from fcn.data.masks import lookup_colours

IMAGE_DIR = "JPEGImages"
SPLIT_DIR = Path("ImageSets") / "Segmentation"
# Splits this large are worth remembering as checked (SBD train_aug: 10,582 pairs, ~30 s).
VALIDATION_CACHE_MIN_PAIRS = 1000


def _colour_table() -> dict[int, int]:
    """Packed 0xRRGGBB -> label index for the VOC colormap; the cream void colour -> 255."""
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(voc_colormap(256))}
    r, g, b = VOID_COLOR
    table[(r << 16) | (g << 8) | b] = VOID_INDEX
    return table


_COLOUR_TO_INDEX = _colour_table()


def read_split(root: Path, split: str) -> list[str]:
    """The ids listed in ROOT/ImageSets/Segmentation/<split>.txt, in file order."""
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} does not exist: set data.root (or VOC_ROOT) to a VOC tree "
            f"holding {IMAGE_DIR}/ and ImageSets/Segmentation/, or make one with "
            f"`fcn-data voc` (VOC 2012) or `fcn-data aug` (VOC + SBD)"
        )
    path = root / SPLIT_DIR / f"{split}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in (root / SPLIT_DIR).glob("*.txt"))
        # train_aug is not in the VOC archive: `fcn-data aug` writes it from SBD.
        make = " or write it with `fcn-data aug`" if split == "train_aug" else ""
        raise DataError(
            f"split list {path} not found: check the split name (available: {have or 'none'}){make}"
        )
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split list {path} is empty: list one image id per line")
    return ids


def read_image(path: Path) -> torch.Tensor:
    """Decode a JPEG to uint8 3xHxW (libjpeg-turbo, no PIL round trip); DataError if corrupt."""
    try:
        return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(
            f"cannot decode image {path} ({reason}): replace it with a valid JPEG"
        ) from None


def read_label(path: Path) -> np.ndarray:
    """A label PNG as uint8 HxW indices: 'P'/'L' values as stored, RGB through the VOC colormap."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L"):
                # np.asarray of a 'P' image gives the palette indices, which ARE the classes.
                return np.asarray(im, dtype=np.uint8)
            if mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"))
            else:
                raise DataError(
                    f"label {path} has image mode {mode!r}: save labels as palette ('P') or "
                    f"grayscale ('L') index PNGs, or RGB VOC-colormap PNGs"
                )
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"cannot read label {path} ({err}): replace it with a valid PNG") from None
    return colours_to_indices(rgb, path)


def colours_to_indices(rgb: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Map an HxWx3 VOC-colormap label to indices; an unknown colour is a DataError."""
    values, unknown = lookup_colours(rgb, _COLOUR_TO_INDEX)
    if unknown is not None:
        raise DataError(
            f"label {path} has colour {unknown[0]}, which is not in the VOC colormap: "
            f"save labels as index PNGs or use VOC colours only"
        )
    return values


class VOCSegmentation(SegmentationDataset):
    """VOC-layout pairs (JPEGImages/<id>.jpg, <label_dir>/<id>.png) listed by a split file.

    Items are (image float32 3xHxW ImageNet-normalised, mask uint8 HxW, 255 = void) after
    `transform(image_uint8, mask_uint8)`; the default transform only normalises. `labels`
    (default: `num_classes` classes, mask value = class, 255 void) maps mask values to classes.
    """

    read_image = staticmethod(read_image)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        label_dir: str = "SegmentationClass",
        num_classes: int = 21,
        transform: Transform | None = None,
        labels: LabelSpec | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.label_dir = label_dir
        labels = labels if labels is not None else LabelSpec.plain(num_classes)
        ids = read_split(self.root, split)
        super().__init__({}, labels, split, transform, source=str(self.root))
        self.ids = ids

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.root / self.label_dir / f"{image_id}.png"

    def missing_files(self) -> list[str]:
        for folder in (IMAGE_DIR, self.label_dir):
            if not (self.root / folder).is_dir():
                return [
                    f"folder {self.root / folder} not found: the VOC tree at data.root "
                    f"needs {IMAGE_DIR}/ and {self.label_dir}/"
                ]
        return super().missing_files()

    def _missing_message(self, kind: str, missing: list[str]) -> str:
        path_of = self.image_path if kind == "image" else self.label_path
        kind = "label" if kind == "mask" else kind
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return (
            f"id {missing[0]!r} in split {self.split!r} has no {kind} "
            f"{path_of(missing[0])}{more}: add the file or remove the id from "
            f"{self.root / SPLIT_DIR / (self.split + '.txt')}"
        )

    def _cache_threshold(self) -> int:
        return VALIDATION_CACHE_MIN_PAIRS

    def _stamp_key(self) -> str:
        # The label folder is part of what was checked (voc_aug: SegmentationClassAug/).
        return f"{self.label_dir}-{super()._stamp_key()}"
