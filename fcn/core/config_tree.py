"""Where the Hydra config tree is: `fcn/conf` inside an installed wheel (pyproject packages the
top-level `conf/` there), else the repository's `conf/` beside `fcn/` (a clone, editable or not)."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"
