"""A dataset's classes as config: names, colours, its void label and how raw mask values become
classes (`data.classes`, `data.palette`, `data.ignore_index`, `data.label_map`,
`data.reduce_zero_label`, `data.void_color`). fcn/data/masks.py decodes mask files with them.

Inside fcn a mask holds class indices 0..C-1 and 255 for void, whatever the dataset's own void
value is: one lookup table per dataset maps raw values there, so the loss, metrics, padding and
pictures never need to know it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fcn.core.classes import VOID_COLOR, VOID_INDEX, default_palette, numbered_class_names
from fcn.core.errors import ConfigError

UNKNOWN = -1  # a raw value that is neither a class nor void (refused by validation)
MAX_CLASSES = 255  # uint8 masks with 255 as void


@dataclass(frozen=True)
class LabelSpec:
    """Class names and colours, and the raw mask value -> class index (or void) table."""

    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = VOID_INDEX
    label_map: tuple[tuple[int, int], ...] | None = None  # raw value -> class or VOID_INDEX
    reduce_zero_label: bool = False
    void_color: tuple[int, int, int] | None = VOID_COLOR

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def plain(cls, num_classes: int, names: Sequence[str] | None = None) -> LabelSpec:
        """Mask value = class, 255 void, default colours (VOC's layout)."""
        return cls.from_config(classes=list(names) if names else None, num_classes=num_classes)

    @classmethod
    def from_config(
        cls,
        classes: Sequence[str] | str | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        ignore_index: int = VOID_INDEX,
        label_map: Mapping[Any, Any] | None = None,
        reduce_zero_label: bool = False,
        void_color: Sequence[int] | None = VOID_COLOR,
        num_classes: int | None = None,
        root: str | Path | None = None,
    ) -> LabelSpec:
        """Check the `data.*` class keys and build the spec; each problem is one ConfigError."""
        if isinstance(classes, str):
            file_names, file_palette = read_class_file(classes, root)
            classes = file_names
            palette = palette if palette is not None else file_palette
        if classes is None:
            if num_classes is None:
                raise ConfigError(
                    "the data has no classes: set data.classes to the class names (a list, "
                    "or a .yaml/.txt file with one name a line)"
                )
            names = numbered_class_names(_int(num_classes, "data.num_classes", 1, MAX_CLASSES))
        else:
            names = _names(classes)
            if num_classes is not None and num_classes != len(names):
                raise ConfigError(
                    f"data.num_classes={num_classes} but data.classes lists {len(names)} names: "
                    f"drop data.num_classes (it follows from the list) or fix data.classes"
                )
        colours = _palette(palette, names)
        void = _colour(void_color, "data.void_color") if void_color is not None else None
        if void is not None and void in colours:
            i = colours.index(void)
            raise ConfigError(
                f"data.void_color={list(void)} is also the colour of class {i} ({names[i]!r}) in "
                "data.palette: give one of them another colour"
            )
        ignore = _int(ignore_index, "data.ignore_index", 0, 255)
        mapping = _label_map(label_map, len(names), ignore) if label_map is not None else None
        if mapping is not None and reduce_zero_label:
            raise ConfigError(
                "data.label_map and data.reduce_zero_label are both set: use data.label_map "
                "alone (map 0 to null and each value v to v-1)"
            )
        if mapping is None:
            first = 1 if reduce_zero_label else 0
            if first <= ignore < first + len(names):
                raise ConfigError(
                    f"data.ignore_index={ignore} is the mask value of class "
                    f"{ignore - first} ({names[ignore - first]!r}): set data.ignore_index to the "
                    f"value your masks use for void (default 255), or remap with data.label_map"
                )
        return cls(tuple(names), tuple(colours), ignore, mapping, bool(reduce_zero_label), void)

    # ---- raw values -> classes ---------------------------------------------------------------

    def value_table(self) -> np.ndarray:
        """int16[256]: raw mask value -> class index, VOID_INDEX (void) or UNKNOWN."""
        table = np.full(256, UNKNOWN, dtype=np.int16)
        if self.label_map is not None:
            for raw, target in self.label_map:
                table[raw] = target
        elif self.reduce_zero_label:
            table[0] = VOID_INDEX
            table[1 : self.num_classes + 1] = np.arange(self.num_classes)
        else:
            table[: self.num_classes] = np.arange(self.num_classes)
        table[self.ignore_index] = VOID_INDEX
        return table

    def colour_lookup(self) -> dict[int, int]:
        """Packed 0xRRGGBB -> class index (void_color -> VOID_INDEX), for RGB colour masks."""
        lookup = {_pack(rgb): i for i, rgb in enumerate(self.palette)}
        if self.void_color is not None:
            lookup[_pack(self.void_color)] = VOID_INDEX
        return lookup

    def fingerprint(self) -> str:
        """Names everything that decides what a mask file decodes to (for caches)."""
        desc = [self.names, self.palette, self.ignore_index, self.label_map]
        desc += [self.reduce_zero_label, self.void_color]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]

    def fix_hint(self) -> str:
        """Which config key fixes a mask value that is neither a class nor void."""
        if self.label_map is not None:
            return "add them to data.label_map (a class index, or null for void)"
        return (
            f"map them with data.label_map (value: class index or null for void), set "
            f"data.ignore_index to your void value (now {self.ignore_index}), or list "
            f"more classes in data.classes (data.num_classes)"
        )

    def describe(self) -> str:
        """e.g. `values 0..5 = classes, 255 = void`: what the masks are expected to hold."""
        if self.label_map is not None:
            return f"data.label_map's {len(self.label_map)} values or {self.ignore_index} (void)"
        first = 1 if self.reduce_zero_label else 0
        void = f"{self.ignore_index}" + (" and 0" if self.reduce_zero_label else "")
        return f"[{first}, {first + self.num_classes}) or {void} (void)"

    def hyper_parameters(self) -> dict[str, Any]:
        """What a checkpoint carries: class names, palette and the data's void value."""
        return {
            "class_names": list(self.names),
            "palette": [list(rgb) for rgb in self.palette],
            "ignore_index": self.ignore_index,
        }


# ---- config values ---------------------------------------------------------------------------


def read_class_file(
    value: str, root: str | Path | None = None
) -> tuple[list[str], list[list[int]] | None]:
    """Names (and a palette, if the YAML has one) from `data.classes=<file>`: a .txt with one
    name a line, or a .yaml holding a list of names or {classes: [...], palette: [...]}.
    A relative path is looked up from the working directory, then under data.root."""
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.is_file() and root is not None:
        path = Path(root).expanduser() / path
    if not path.is_file():
        raise ConfigError(
            f"data.classes={value}: no such file; pass a list of names or a .yaml/.txt file"
        )
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"data.classes={path}: not valid YAML ({err})") from None
        if isinstance(loaded, dict):
            return list(loaded.get("classes") or []), loaded.get("palette")
        if isinstance(loaded, list):
            return loaded, None
        raise ConfigError(
            f"data.classes={path}: expected a list of names or a mapping with `classes:`"
        )
    return [line.strip() for line in text.splitlines() if line.strip()], None


def _names(classes: Any) -> list[str]:
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        try:
            classes = list(classes)
        except TypeError:
            raise ConfigError(f"data.classes must be a list of names, got {classes!r}") from None
    names = [str(n) for n in classes]
    if not names or any(not n.strip() for n in names):
        raise ConfigError(f"data.classes must be non-empty names, got {names}")
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"data.classes lists {len(names)} names: at most {MAX_CLASSES} fit")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ConfigError(
                f"data.classes names {n!r} twice (classes {seen[n]} and {i}): names must differ"
            )
        seen[n] = i
    return names


def _palette(palette: Any, names: list[str]) -> list[tuple[int, int, int]]:
    if palette is None:
        return default_palette(len(names))
    try:
        colours = [_colour(rgb, "data.palette") for rgb in palette]
    except TypeError:
        raise ConfigError(f"data.palette must be a list of [r, g, b], got {palette!r}") from None
    if len(colours) != len(names):
        raise ConfigError(
            f"data.palette has {len(colours)} colours but data.classes has {len(names)} names: "
            f"give one [r, g, b] per class, in class order (or leave data.palette out)"
        )
    first: dict[tuple[int, int, int], int] = {}
    for i, rgb in enumerate(colours):
        if rgb in first:
            j = first[rgb]
            raise ConfigError(
                f"data.palette uses {list(rgb)} twice, for classes {j} ({names[j]!r}) and {i} "
                f"({names[i]!r}): give every class its own colour"
            )
        first[rgb] = i
    return colours


def _colour(value: Any, key: str) -> tuple[int, int, int]:
    try:
        items = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not an [r, g, b] colour") from None
    if len(items) != 3 or not all(0 <= v <= 255 for v in items):
        raise ConfigError(f"{key}: {list(value)} is not an [r, g, b] colour of 0-255 values")
    return items[0], items[1], items[2]


def _int(value: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _label_map(label_map: Mapping[Any, Any], num_classes: int, ignore: int) -> tuple:
    if not isinstance(label_map, Mapping):
        raise ConfigError(f"data.label_map must map raw values to classes, got {label_map!r}")
    pairs = []
    for raw, target in label_map.items():
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = -1
        if not 0 <= value <= 255:
            raise ConfigError(f"data.label_map key {raw!r} is not a mask value in [0, 255]")
        if target is None or target == ignore or target == VOID_INDEX:
            pairs.append((value, VOID_INDEX))
            continue
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < num_classes:
            raise ConfigError(
                f"data.label_map maps {value} to {target!r}, outside the {num_classes} classes "
                f"[0, {num_classes}): map to a class index, or to null for void"
            )
        if value == ignore:
            raise ConfigError(
                f"data.label_map maps {value} to class {target}, but {value} is "
                f"data.ignore_index (void): change one of them"
            )
        pairs.append((value, target))
    return tuple(sorted(pairs))


def _pack(rgb: Sequence[int]) -> int:
    return (int(rgb[0]) << 16) | (int(rgb[1]) << 8) | int(rgb[2])
