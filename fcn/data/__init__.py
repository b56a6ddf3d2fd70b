"""VOC-layout data: the dataset, joint transforms, the synthetic generator, the datamodule."""

from fcn.data.datamodule import VOCDataModule, pad_collate
from fcn.data.synthetic import SYNTHETIC_CLASSES, ensure_synthetic_voc, generate_synthetic_voc
from fcn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    normalize_image,
)
from fcn.data.voc import VOCSegmentation, colours_to_indices, read_image, read_label, read_split

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SYNTHETIC_CLASSES",
    "EvalTransform",
    "TrainTransform",
    "VOCDataModule",
    "VOCSegmentation",
    "colours_to_indices",
    "ensure_synthetic_voc",
    "generate_synthetic_voc",
    "normalize_image",
    "pad_collate",
    "read_image",
    "read_label",
    "read_split",
]
