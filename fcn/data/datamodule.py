"""SegmentationDataModule: any dataset a config describes (VOC's layout, real, SBD-augmented or
generated; or `data=folder` layouts), its classes from the config, for Lightning."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from fcn.core.classes import VOID_COLOR, VOID_INDEX
from fcn.core.errors import ConfigError
from fcn.core.validate import positive_pair, whole_number
from fcn.data.dataset import SegmentationDataset, Transform
from fcn.data.device_augment import (
    DeferredTrainTransform,
    apply_on_device,
    deferred_collate,
    is_deferred_batch,
)
from fcn.data.eval_sharding import eval_sampler
from fcn.data.folder import split_pairs
from fcn.data.labels import LabelSpec
from fcn.data.synthetic import META_FILE, SYNTHETIC_CLASSES, ensure_synthetic_voc
from fcn.data.training_stream import train_loader
from fcn.data.transforms import EvalTransform, TrainTransform
from fcn.data.voc import VOCSegmentation
from fcn.data.workers import worker_init

_SYNTHETIC_KEYS = ("num_train", "num_val", "size", "seed")
LAYOUTS = ("voc", "folder")


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack whole images of different sizes: pad bottom/right, image with 0, mask with 255.

    One allocation per batch and one copy per item (padding then stacking would copy twice);
    a single item (whole-image evaluation at batch 1) is returned as a view, with no copy.
    """
    if len(batch) == 1:
        image, mask = batch[0]
        return image[None], mask[None]
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    first_image, first_mask = batch[0]
    images = first_image.new_zeros((len(batch), first_image.shape[0], h, w))
    masks = first_mask.new_full((len(batch), h, w), VOID_INDEX)
    for i, (image, mask) in enumerate(batch):
        images[i, :, : image.shape[-2], : image.shape[-1]] = image
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks


def _validation_cache() -> Path:
    """Where large splits that passed validation are remembered (FCN_CACHE, ~/.cache/fcn)."""
    return Path(os.environ.get("FCN_CACHE", "~/.cache/fcn")).expanduser() / "validated"


class SegmentationDataModule(L.LightningDataModule):
    """Train on random crops, validate/test on whole images; every pair is used.

    `layout="voc"` reads a VOC tree (JPEGImages/, `<label_dir>`/, ImageSets/Segmentation/);
    `layout="folder"` pairs `image_dir` and `mask_dir` files by stem (fcn/data/folder.py).
    The classes (`classes`, `palette`, `ignore_index`, `label_map`, `reduce_zero_label`,
    `void_color`) are config: fcn/data/labels.py. With `synthetic` set (generator arguments
    num_train, num_val, size, seed), `root` is a cache folder: the tree is generated once into
    root/<key> and read back through the same VOC code as real data.
    """

    def __init__(
        self,
        root: str = "data/VOCdevkit/VOC2012",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        train_label_dir: str = "SegmentationClass",
        val_label_dir: str = "SegmentationClass",
        crop_size: Sequence[int] = (320, 480),
        scale_range: Sequence[float] = (0.5, 2.0),
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 2,
        num_classes: int | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        synthetic: dict[str, Any] | None = None,
        layout: str = "voc",
        image_dir: str | None = None,
        mask_dir: str | None = None,
        image_suffix: str | None = None,
        mask_suffix: str = ".png",
        classes: Sequence[str] | str | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        ignore_index: int = VOID_INDEX,
        label_map: dict[Any, Any] | None = None,
        reduce_zero_label: bool = False,
        void_color: Sequence[int] | None = VOID_COLOR,
        gpu_augment: bool = False,
        val_inference: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # read by the LightningModule (conf/train.yaml's model.val_inference), kept for reports
        self.val_inference = val_inference
        self.crop_size = positive_pair(crop_size, "data.crop_size")
        self.batch_size = whole_number(batch_size, "data.batch_size")
        self.val_batch_size = whole_number(val_batch_size, "data.val_batch_size")
        try:
            lo, hi = float(scale_range[0]), float(scale_range[1])
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"data.scale_range must be [min, max], got {scale_range}") from None
        if not 0 < lo <= hi:
            raise ConfigError(f"data.scale_range must satisfy 0 < min <= max, got {[lo, hi]}")
        self.scale_range = (lo, hi)
        self.num_workers = whole_number(num_workers, "data.num_workers", minimum=0)
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout={layout!r} is not one of {', '.join(LAYOUTS)}")
        if layout == "folder" and synthetic is not None:
            raise ConfigError("data.synthetic generates a VOC tree: use it with data.layout=voc")
        self.layout = layout
        self.root = root
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.train_label_dir, self.val_label_dir = train_label_dir, val_label_dir
        self.folder = {
            "image_dir": image_dir,
            "mask_dir": mask_dir,
            "image_suffix": image_suffix,
            "mask_suffix": mask_suffix,
        }
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        if classes is None and num_classes is not None:
            classes = self._generated_names(num_classes, synthetic)
        self.labels = LabelSpec.from_config(
            classes, palette, ignore_index, label_map, reduce_zero_label, void_color,
            num_classes, root=Path(str(root)).expanduser(),
        )  # fmt: skip
        self.num_classes = self.labels.num_classes
        self.synthetic = self._check_synthetic(synthetic)
        # Workers decode and draw; resize/flip/normalise run on the batch on the device.
        self.gpu_augment = bool(gpu_augment)
        self.train_dataset: SegmentationDataset | None = None
        self.val_dataset: SegmentationDataset | None = None
        self.test_dataset: SegmentationDataset | None = None

    def _generated_names(self, num_classes: int, synthetic: dict | None) -> list[str] | None:
        """The names a generated tree records (synthetic.json), when only a count is given."""
        if synthetic is not None and num_classes == len(SYNTHETIC_CLASSES):
            return list(SYNTHETIC_CLASSES)
        meta = Path(str(self.root)).expanduser() / META_FILE
        if self.layout == "voc" and meta.is_file():
            names = json.loads(meta.read_text()).get("classes", [])
            if len(names) == num_classes:
                return list(names)
        return None

    def _check_synthetic(self, synthetic: dict[str, Any] | None) -> dict[str, Any] | None:
        if synthetic is None:
            return None
        synthetic = dict(synthetic)
        unknown = sorted(set(synthetic) - set(_SYNTHETIC_KEYS))
        if unknown:
            raise ConfigError(
                f"data.synthetic has unknown keys {unknown}: allowed {list(_SYNTHETIC_KEYS)}"
            )
        if "size" in synthetic:
            synthetic["size"] = list(positive_pair(synthetic["size"], "data.synthetic.size"))
        for key in ("num_train", "num_val"):
            if key in synthetic:
                whole_number(synthetic[key], f"data.synthetic.{key}")
        if self.num_classes != len(SYNTHETIC_CLASSES):
            raise ConfigError(
                f"data.num_classes={self.num_classes} but the synthetic data has "
                f"{len(SYNTHETIC_CLASSES)} classes ({', '.join(SYNTHETIC_CLASSES)}): list "
                f"{len(SYNTHETIC_CLASSES)} names in data.classes"
            )
        return synthetic

    @property
    def class_names(self) -> list[str]:
        return list(self.labels.names)

    @property
    def data_root(self) -> Path:
        """The VOC tree actually read (for synthetic data: the generated tree in the cache)."""
        if self.synthetic is not None:
            return ensure_synthetic_voc(self.root, **self.synthetic)
        return Path(self.root).expanduser()

    def prepare_data(self) -> None:
        # Rank 0 (per node) generates; setup() on other ranks finds it or races safely.
        if self.synthetic is not None:
            ensure_synthetic_voc(self.root, **self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            transform = (DeferredTrainTransform if self.gpu_augment else TrainTransform)(
                self.crop_size, self.scale_range
            )
            self.train_dataset = self.dataset("train", transform)
            self.train_dataset.validate(cache_dir=_validation_cache())
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._eval_dataset("val")
        if stage in (None, "test", "predict") and self.test_dataset is None:
            same = self.val_dataset is not None and self.test_split == self.val_split
            self.test_dataset = self.val_dataset if same else self._eval_dataset("test")

    def dataset(self, which: str, transform: Transform | None = None) -> SegmentationDataset:
        """The pairs of the train, val or test split (not validated yet)."""
        split = {"train": self.train_split, "val": self.val_split, "test": self.test_split}[which]
        if self.layout == "voc":
            label_dir = self.train_label_dir if which == "train" else self.val_label_dir
            return VOCSegmentation(
                self.data_root, split, label_dir, transform=transform, labels=self.labels
            )
        pairs, source = split_pairs(
            self.data_root, str(split), f"data.{which}_split", **self.folder
        )
        return SegmentationDataset(pairs, self.labels, str(split), transform, source)

    def _eval_dataset(self, which: str) -> SegmentationDataset:
        dataset = self.dataset(which, EvalTransform())
        dataset.validate(cache_dir=_validation_cache())
        return dataset

    def _loader(self, dataset: SegmentationDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        common = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            # workers ignore SIGTERM/SIGUSR*: the main process owns job control
            "worker_init_fn": worker_init if self.num_workers > 0 else None,
        }
        # --- scale-out (fcn/data/training_stream.py, fcn/data/eval_sharding.py) ---
        # Training: a stream that resumes mid-epoch exactly (seeded order and augmentation).
        # Val/test: under DDP every image on exactly one rank (no padding repeats in metrics).
        if train:
            if self.gpu_augment:
                common["collate_fn"] = deferred_collate
            return train_loader(dataset, self.batch_size, **common)
        return DataLoader(
            dataset,
            batch_size=self.val_batch_size,
            sampler=eval_sampler(dataset, allow_empty_ranks=self._empty_ranks_allowed()),
            shuffle=False,
            drop_last=False,
            collate_fn=pad_collate,
            **common,
        )

    def _empty_ranks_allowed(self) -> bool:
        """Lightning's switch: the module (fcn-eval's) syncs only after the evaluation loop."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        flag = "allow_zero_length_dataloader_with_multiple_devices"
        return bool(getattr(self, flag) or getattr(module, flag, False))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # data.gpu_augment: the training batch arrives as decoded uint8 plus its draws.
        if is_deferred_batch(batch):
            return apply_on_device(*batch, self.crop_size)
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, train=False)


# The name the configs and tests have always used.
VOCDataModule = SegmentationDataModule
