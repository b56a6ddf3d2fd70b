"""A PASCAL VOC-layout segmentation dataset: index or RGB-colormap labels, checked up front."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from fcn.core.classes import VOID_COLOR, VOID_INDEX, voc_colormap
from fcn.core.errors import DataError
from fcn.data.transforms import EvalTransform

IMAGE_DIR = "JPEGImages"
SPLIT_DIR = Path("ImageSets") / "Segmentation"

# Splits this large are worth remembering as checked (SBD train_aug: 10,582 pairs, ~30 s).
VALIDATION_CACHE_MIN_PAIRS = 1000
_VALIDATION_VERSION = 1

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    colours, inverse = np.unique(packed, return_inverse=True)
    lut = np.empty(len(colours), dtype=np.uint8)
    for k, c in enumerate(colours.tolist()):
        index = _COLOUR_TO_INDEX.get(c)
        if index is None:
            rgb_c = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
            raise DataError(
                f"label {path} has colour {rgb_c}, which is not in the VOC colormap: "
                f"save labels as index PNGs or use VOC colours only"
            )
        lut[k] = index
    return lut[inverse.reshape(packed.shape)]


class VOCSegmentation(Dataset):
    """VOC-layout pairs (JPEGImages/<id>.jpg, <label_dir>/<id>.png) listed by a split file.

    Items are (image float32 3xHxW ImageNet-normalised, mask uint8 HxW, 255 = void) after
    `transform(image_uint8, mask_uint8)`; the default transform only normalises.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        label_dir: str = "SegmentationClass",
        num_classes: int = 21,
        transform: Transform | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.label_dir = label_dir
        self.num_classes = num_classes
        self.transform = transform if transform is not None else EvalTransform()
        self.ids = read_split(self.root, split)

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.root / self.label_dir / f"{image_id}.png"

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: uint8 image 3xHxW and uint8 mask HxW."""
        image_id = self.ids[index]
        image = read_image(self.image_path(image_id))
        mask = torch.from_numpy(read_label(self.label_path(image_id)).copy())
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        return self.transform(image, mask)

    # -- checks -------------------------------------------------------------------------------

    def validate(self, max_workers: int | None = None, cache_dir: Path | None = None) -> None:
        """Check every pair before training: files exist, decode, sizes agree, values in range.

        Raises one DataError naming the first bad file (in split order) and the fix. With
        `cache_dir`, a split of at least VALIDATION_CACHE_MIN_PAIRS pairs that passed once is
        not decoded again while its files keep their sizes and modification times.
        """
        for folder in (IMAGE_DIR, self.label_dir):
            if not (self.root / folder).is_dir():
                raise DataError(
                    f"folder {self.root / folder} not found: the VOC tree at data.root "
                    f"needs {IMAGE_DIR}/ and {self.label_dir}/"
                )
        stats = []
        for kind, path_of in (("image", self.image_path), ("label", self.label_path)):
            missing = []
            for image_id in self.ids:
                try:
                    st = os.stat(path_of(image_id))
                    stats.append((st.st_size, st.st_mtime_ns))
                except OSError:
                    missing.append(image_id)
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise DataError(
                    f"id {missing[0]!r} in split {self.split!r} has no {kind} "
                    f"{path_of(missing[0])}{more}: add the file or remove the id from "
                    f"{self.root / SPLIT_DIR / (self.split + '.txt')}"
                )
        stamp = None
        if cache_dir is not None and len(self.ids) >= VALIDATION_CACHE_MIN_PAIRS:
            stamp = Path(cache_dir) / self._stamp_key(stats)
            if stamp.is_file():
                return
        workers = max_workers or min(8, 2 * (os.cpu_count() or 1))
        # Decoding releases the GIL (libjpeg, zlib), so threads give real parallelism here.
        with ThreadPoolExecutor(workers) as pool:
            errors = list(pool.map(self._check_pair, self.ids))
        bad = [e for e in errors if e is not None]
        if bad:
            more = (
                f" ({len(bad) - 1} more bad pairs in split {self.split!r})" if len(bad) > 1 else ""
            )
            raise DataError(f"{bad[0]}{more}")
        if stamp is not None:
            try:  # best effort: a read-only cache only costs the next run its check
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.write_text(f"{self.root.resolve()} {self.split} ok\n")
            except OSError:
                pass

    def _stamp_key(self, stats: list[tuple[int, int]]) -> str:
        """Names what was checked: tree, split, label folder, classes, every file's size+mtime."""
        desc = [_VALIDATION_VERSION, str(self.root.resolve()), self.split, self.label_dir]
        desc += [self.num_classes, self.ids, stats]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:32] + ".ok"

    def _check_pair(self, image_id: str) -> str | None:
        """One pair's problem as a message, or None; never raises for data problems."""
        image_path, label_path = self.image_path(image_id), self.label_path(image_id)
        try:
            image = read_image(image_path)
            label = read_label(label_path)
        except DataError as err:
            return str(err)
        if tuple(label.shape) != tuple(image.shape[1:]):
            return (
                f"label {label_path} is {label.shape[0]}x{label.shape[1]} but image "
                f"{image_path} is {image.shape[1]}x{image.shape[2]} (HxW): labels must match "
                f"their image's size"
            )
        present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
        bad = present[(present >= self.num_classes) & (present != VOID_INDEX)]
        if bad.size:
            return (
                f"label {label_path} has values {bad.tolist()} outside [0, {self.num_classes}) "
                f"and 255 (void): set data.num_classes to cover them or fix the label"
            )
        return None
