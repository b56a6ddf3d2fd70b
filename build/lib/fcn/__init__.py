"""Fully Convolutional Networks for semantic segmentation.

`from fcn import load_segmenter` gives the notebook API (fcn.api); it is imported on first
use, so `import fcn.<module>` stays as light as that module.
"""

from typing import Any

__all__ = ["load_segmenter"]


def __getattr__(name: str) -> Any:
    if name == "load_segmenter":
        from fcn.api import load_segmenter

        return load_segmenter
    raise AttributeError(f"module 'fcn' has no attribute {name!r}")
