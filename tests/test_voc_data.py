"""fcn.data: the synthetic generator, VOC reading, joint transforms, the datamodule, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from fcn.core.classes import VOID_COLOR, VOID_INDEX, voc_colormap, voc_palette
from fcn.core.errors import ConfigError, DataError
from fcn.core.normalization import denormalize
from fcn.data import (
    SYNTHETIC_CLASSES,
    VOCDataModule,
    VOCSegmentation,
    pad_collate,
    read_label,
)

NUM_SYN = len(SYNTHETIC_CLASSES)


# -- synthetic generator --------------------------------------------------------------------


# -- reading labels ------------------------------------------------------------------------


def test_index_and_rgb_labels_load_the_same(tiny_voc: Path, tmp_path: Path) -> None:
    png = tiny_voc / "SegmentationClass" / "train_00000.png"
    index = read_label(png)
    assert index.dtype == np.uint8 and (index == VOID_INDEX).any()
    rgb_path = tmp_path / "rgb.png"
    Image.open(png).convert("RGB").save(rgb_path)
    assert Image.open(rgb_path).mode == "RGB"
    np.testing.assert_array_equal(read_label(rgb_path), index)
    gray_path = tmp_path / "gray.png"
    Image.fromarray(index).save(gray_path)  # 'L' index PNG, as SBD's SegmentationClassAug
    assert Image.open(gray_path).mode == "L"
    np.testing.assert_array_equal(read_label(gray_path), index)


def test_rgb_label_maps_every_voc_colour(tmp_path: Path) -> None:
    colours = np.array(voc_colormap(21) + [VOID_COLOR], dtype=np.uint8).reshape(1, 22, 3)
    path = tmp_path / "all.png"
    Image.fromarray(colours).save(path)
    assert read_label(path).tolist() == [list(range(21)) + [VOID_INDEX]]


# -- transforms ----------------------------------------------------------------------------


# -- dataset and datamodule ----------------------------------------------------------------


def test_dataset_items(tiny_voc: Path) -> None:
    ds = VOCSegmentation(tiny_voc, "val", num_classes=NUM_SYN)
    assert len(ds) == 4
    image, mask = ds[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3
    assert mask.dtype == torch.uint8 and mask.shape == image.shape[1:]
    raw = np.asarray(Image.open(tiny_voc / "SegmentationClass" / "val_00000.png"))
    np.testing.assert_array_equal(mask.numpy(), raw)
    jpeg = np.asarray(Image.open(tiny_voc / "JPEGImages" / "val_00000.jpg")).astype(np.float32)
    assert (
        np.abs(denormalize(image).permute(1, 2, 0).numpy().astype(float) - jpeg).max() < 3
    )  # same JPEG, maybe another IDCT


def test_every_id_is_served_even_when_smaller_than_the_crop(tiny_voc: Path) -> None:
    dm = VOCDataModule(
        root=str(tiny_voc),
        num_classes=NUM_SYN,
        crop_size=[96, 100],  # larger than every tiny image (<= 80 px a side)
        scale_range=[0.5, 1.0],
        batch_size=3,
        val_batch_size=3,
        num_workers=0,
    )
    dm.setup("fit")
    assert dm.class_names == list(SYNTHETIC_CLASSES)
    seen = 0
    for images, masks in dm.train_dataloader():
        assert images.shape[1:] == (3, 96, 100) and masks.shape[1:] == (96, 100)
        assert ((masks != VOID_INDEX).flatten(1).sum(1) > 0).all()
        seen += len(images)
    assert seen == 8
    seen = 0
    for images, masks in dm.val_dataloader():
        assert masks.shape[0] == images.shape[0] == 3 or seen == 3
        seen += len(images)
    assert seen == 4


def test_val_loader_whole_images_padded(tiny_datamodule: VOCDataModule) -> None:
    tiny_datamodule.setup("validate")
    ds = tiny_datamodule.val_dataset
    images, masks = next(iter(tiny_datamodule.val_dataloader()))
    pairs = [ds[0], ds[1]]
    h = max(p[0].shape[1] for p in pairs)
    w = max(p[0].shape[2] for p in pairs)
    assert images.shape == (2, 3, h, w) and masks.shape == (2, h, w)
    for k, (image, mask) in enumerate(pairs):
        ih, iw = mask.shape
        assert torch.equal(images[k, :, :ih, :iw], image)
        assert torch.equal(masks[k, :ih, :iw], mask)
        assert (images[k, :, ih:, :] == 0).all() and (images[k, :, :, iw:] == 0).all()
        assert (masks[k, ih:, :] == VOID_INDEX).all() and (masks[k, :, iw:] == VOID_INDEX).all()
    single_image, single_mask = pad_collate([pairs[0]])
    assert single_image.shape == (1, *pairs[0][0].shape)
    assert torch.equal(single_image[0], pairs[0][0]) and torch.equal(single_mask[0], pairs[0][1])


# -- bad input -----------------------------------------------------------------------------


@pytest.fixture
def voc_copy(tiny_voc: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_voc, tmp_path / "voc"))


def _setup_error(root: Path, num_classes: int = NUM_SYN) -> str:
    dm = VOCDataModule(root=str(root), num_classes=num_classes, crop_size=[32, 32], num_workers=0)
    with pytest.raises(DataError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_root(tmp_path: Path) -> None:
    assert str(tmp_path / "nowhere") in _setup_error(tmp_path / "nowhere")


def test_missing_split_file(voc_copy: Path) -> None:
    (voc_copy / "ImageSets" / "Segmentation" / "val.txt").unlink()
    assert "val.txt" in _setup_error(voc_copy)


@pytest.mark.parametrize("folder,suffix", [("JPEGImages", "jpg"), ("SegmentationClass", "png")])
def test_id_without_file(voc_copy: Path, folder: str, suffix: str) -> None:
    (voc_copy / folder / f"train_00003.{suffix}").unlink()
    message = _setup_error(voc_copy)
    assert f"{folder}/train_00003.{suffix}" in message and "'train_00003'" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_image(voc_copy: Path, damage: str) -> None:
    path = voc_copy / "JPEGImages" / "train_00002.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a jpeg" * 20)
    assert str(path) in _setup_error(voc_copy)


def test_corrupt_label(voc_copy: Path) -> None:
    path = voc_copy / "SegmentationClass" / "val_00001.png"
    path.write_bytes(path.read_bytes()[:60])
    assert str(path) in _setup_error(voc_copy)


def test_label_size_mismatch(voc_copy: Path) -> None:
    path = voc_copy / "SegmentationClass" / "train_00001.png"
    label = Image.open(path)
    label.resize((label.width + 3, label.height), Image.NEAREST).save(path)
    message = _setup_error(voc_copy)
    assert str(path) in message and "size" in message


def test_label_values_out_of_range(voc_copy: Path) -> None:
    path = voc_copy / "SegmentationClass" / "train_00004.png"
    label = np.asarray(Image.open(path)).copy()
    label[:3, :3] = 9
    label[-2:, -2:] = 30
    png = Image.fromarray(label)
    png.putpalette(voc_palette())
    png.save(path)
    message = _setup_error(voc_copy)
    assert str(path) in message and "[9, 30]" in message and "data.num_classes" in message


def test_num_classes_smaller_than_data(voc_copy: Path) -> None:
    message = _setup_error(voc_copy, num_classes=3)
    assert "data.num_classes" in message


def test_unknown_rgb_colour(voc_copy: Path) -> None:
    path = voc_copy / "SegmentationClass" / "val_00000.png"
    rgb = np.asarray(Image.open(path).convert("RGB")).copy()
    rgb[5, 5] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    message = _setup_error(voc_copy)
    assert str(path) in message and "(1, 2, 3)" in message


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"crop_size": [0, 32]}, "data.crop_size"),
        ({"crop_size": [-5, 32]}, "data.crop_size"),
        ({"crop_size": [32]}, "data.crop_size"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"val_batch_size": -1}, "data.val_batch_size"),
        ({"scale_range": [2.0, 0.5]}, "data.scale_range"),
        ({"num_classes": 21, "synthetic": {"num_train": 2}}, "data.num_classes"),
        ({"num_classes": 6, "synthetic": {"frames": 2}}, "data.synthetic"),
    ],
)
def test_bad_config(tmp_path: Path, kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        VOCDataModule(root=str(tmp_path), **kwargs)


# -- real VOC files ------------------------------------------------------------------------


def test_voc_mini_labels_are_raw_indices(voc_mini: Path) -> None:
    for png in sorted((voc_mini / "SegmentationClass").glob("*.png")):
        np.testing.assert_array_equal(read_label(png), np.array(Image.open(png)))


def test_voc_mini_datamodule(voc_mini: Path) -> None:
    # VOC's class names are data: conf/data/voc.yaml holds them.
    classes = list(OmegaConf.load(Path(__file__).parents[1] / "conf/data/voc.yaml").classes)
    dm = VOCDataModule(root=str(voc_mini), batch_size=2, num_workers=0, classes=classes)
    dm.setup("fit")
    assert len(dm.train_dataset) == 295 and len(dm.val_dataset) == 269
    assert dm.class_names[15] == "person"
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 320, 480) and masks.shape == (2, 320, 480)
    assert images.dtype == torch.float32 and masks.dtype == torch.uint8
    values = set(masks.unique().tolist())
    assert values <= set(range(21)) | {VOID_INDEX} and len(values - {0, VOID_INDEX}) >= 1
    images, masks = next(iter(dm.val_dataloader()))
    first = voc_mini / "JPEGImages" / f"{dm.val_dataset.ids[0]}.jpg"
    assert images.shape[2:] == Image.open(first).size[::-1]


def test_validation_of_large_splits_is_remembered(
    voc_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcn.data.voc as voc

    monkeypatch.setattr(voc, "VALIDATION_CACHE_MIN_PAIRS", 1)
    cache = tmp_path / "validated"
    ds = VOCSegmentation(voc_copy, "train", num_classes=NUM_SYN)
    ds.validate(cache_dir=cache)
    assert len(list(cache.iterdir())) == 1
    calls = []
    monkeypatch.setattr(ds, "_check_pair", lambda i: calls.append(i))
    ds.validate(cache_dir=cache)
    assert calls == []  # unchanged files: not decoded again
    path = voc_copy / "JPEGImages" / "train_00005.jpg"
    path.write_bytes(path.read_bytes()[:100])  # changed file: checked again, error found
    monkeypatch.undo()
    monkeypatch.setattr(voc, "VALIDATION_CACHE_MIN_PAIRS", 1)
    with pytest.raises(DataError, match="train_00005.jpg"):
        ds.validate(cache_dir=cache)
