"""Data: datasets of any layout, their classes, joint transforms, the synthetic generator, the
datamodule.

Names are imported on first use (PEP 562): importing the package then leaves its submodules
unloaded, so `python -m fcn.data.synthetic` runs the module once (an eager import here made
runpy warn that it was already in sys.modules) and does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "LabelSpec": "labels",
    "MaskDecoder": "masks",
    "SegmentationDataModule": "datamodule",
    "SegmentationDataset": "dataset",
    "VOCDataModule": "datamodule",
    "pad_collate": "datamodule",
    "SYNTHETIC_CLASSES": "synthetic",
    "ensure_synthetic_voc": "synthetic",
    "generate_synthetic_voc": "synthetic",
    "EvalTransform": "transforms",
    "TrainTransform": "transforms",
    "VOCSegmentation": "voc",
    "colours_to_indices": "voc",
    "read_image": "voc",
    "read_label": "voc",
    "read_split": "voc",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fcn.data' has no attribute {name!r}")
    value = getattr(import_module(f"fcn.data.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
