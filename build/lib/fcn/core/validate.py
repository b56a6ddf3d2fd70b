"""Checks of config values, each failing as one ConfigError that names the key and the fix."""

from __future__ import annotations

from typing import Any

from fcn.core.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def whole_number(value: Any, key: str, minimum: int = 1) -> int:
    """`value` as an int >= `minimum` (true/false are not numbers here)."""
    if not _is_int(value) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key} must be {wanted}, got {value!r}")
    return value


def whole_number_or_auto(value: Any, key: str, minimum: int = 1) -> int | str:
    """`auto`, or an int >= `minimum`."""
    if value == "auto":
        return value
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{key} must be auto or an integer >= {minimum}, got {value!r}")
    return value


def positive_pair(value: Any, key: str, example: str = "[320,480]") -> tuple[int, int]:
    """[height, width] of positive ints (a single int means a square)."""
    items = [value, value] if _is_int(value) else value
    try:
        items = list(items)
    except TypeError:
        items = []
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise ConfigError(f"{key} must be [height, width] as two positive ints, got {value!r}")
    if min(items) <= 0:
        raise ConfigError(f"{key} must be positive, got {items}: e.g. {key}={example}")
    return items[0], items[1]
