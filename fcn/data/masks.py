"""Mask files -> class indices (255 void) through a dataset's LabelSpec: index PNGs through its
value table, RGB colour-coded masks through its palette."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fcn.core.classes import VOID_INDEX
from fcn.core.errors import DataError
from fcn.data.labels import UNKNOWN, LabelSpec

Colour = tuple[int, int, int]


def lookup_colours(
    rgb: np.ndarray, table: dict[int, int]
) -> tuple[np.ndarray, tuple[Colour, tuple[int, int]] | None]:
    """An H x W x 3 colour-coded mask through `table` (0xRRGGBB -> value): (H x W uint8 values,
    None), or (unusable, (the first colour not in `table`, its (x, y))) for the caller's error."""
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    colours, inverse = np.unique(packed, return_inverse=True)
    lut = np.empty(len(colours), dtype=np.uint8)
    for k, c in enumerate(colours.tolist()):
        value = table.get(c)
        if value is None:
            y, x = (int(v) for v in np.argwhere(packed == c)[0])
            return lut, (((c >> 16) & 255, (c >> 8) & 255, c & 255), (x, y))
        lut[k] = value
    return lut[inverse.reshape(packed.shape)], None


def read_raw_mask(path: Path) -> tuple[str, np.ndarray]:
    """('index', H x W uint8 values as stored) for 'P'/'L' PNGs, ('rgb', H x W x 3 uint8) for
    colour-coded masks; DataError for anything else."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                # np.asarray of a 'P' image gives the palette indices, which ARE the values.
                return "index", np.asarray(im, dtype=np.uint8)
            if im.mode in ("RGB", "RGBA"):
                return "rgb", np.asarray(im.convert("RGB"))
            mode = im.mode
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"cannot read mask {path} ({err}): replace it with a valid PNG") from None
    raise DataError(
        f"mask {path} has image mode {mode!r}: save masks as palette ('P') or grayscale ('L') "
        f"index PNGs, or RGB PNGs in data.palette's colours"
    )


class MaskDecoder:
    """Mask files -> uint8 class indices (255 void) through one LabelSpec."""

    def __init__(self, spec: LabelSpec) -> None:
        self.spec = spec
        self.table = spec.value_table()
        self._lut = np.where(self.table == UNKNOWN, VOID_INDEX, self.table).astype(np.uint8)
        self._colours = spec.colour_lookup()

    def unknown_values(self, raw: np.ndarray) -> list[int]:
        """The raw values present in an index mask that are neither a class nor void."""
        present = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
        return [int(v) for v in present if self.table[v] == UNKNOWN]

    def decode(self, path: Path) -> tuple[np.ndarray, list[int]]:
        """(class indices, the unknown raw values found); an unknown RGB colour is a DataError
        naming the file, the first pixel that has it and the colour."""
        kind, raw = read_raw_mask(path)
        if kind == "index":
            return self._lut[raw], self.unknown_values(raw)
        return self.colours_to_classes(raw, path), []

    def load(self, path: Path) -> np.ndarray:
        """Class indices only (for loaders: validation has refused unknown values already)."""
        return self.decode(path)[0]

    def colours_to_classes(self, rgb: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
        values, unknown = lookup_colours(rgb, self._colours)
        if unknown is not None:
            rgb_c, (x, y) = unknown
            void = list(self.spec.void_color) if self.spec.void_color else None
            raise DataError(
                f"mask {path} has colour {rgb_c} at pixel (x={x}, y={y}), which is neither a "
                f"class colour in data.palette nor data.void_color={void}: add the colour "
                f"to data.palette (and its class to data.classes) or fix the mask"
            )
        return values
