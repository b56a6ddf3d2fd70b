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
from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from fcn.data import (
    SYNTHETIC_CLASSES,
    TrainTransform,
    VOCDataModule,
    VOCSegmentation,
    ensure_synthetic_voc,
    generate_synthetic_voc,
    pad_collate,
    read_label,
)
from fcn.data.synthetic import main as synthetic_main

NUM_SYN = len(SYNTHETIC_CLASSES)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _unnormalize(image: torch.Tensor) -> np.ndarray:
    """float 3xHxW normalised -> float HxWx3 in 0..255."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


# -- synthetic generator --------------------------------------------------------------------


def test_synthetic_tree_layout_and_palette(tiny_voc: Path) -> None:
    lists = tiny_voc / "ImageSets" / "Segmentation"
    train = (lists / "train.txt").read_text().split()
    val = (lists / "val.txt").read_text().split()
    assert len(train) == 8 and len(val) == 4
    assert (lists / "trainval.txt").read_text().split() == train + val
    for image_id in train + val:
        with Image.open(tiny_voc / "JPEGImages" / f"{image_id}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            size = im.size
        with Image.open(tiny_voc / "SegmentationClass" / f"{image_id}.png") as lab:
            assert lab.mode == "P"
            assert lab.getpalette() == voc_palette()
            assert lab.size == size
            values = set(np.unique(np.asarray(lab)).tolist())
        assert values <= set(range(NUM_SYN)) | {VOID_INDEX}
        assert 0 in values and len(values - {0, VOID_INDEX}) >= 1
    sizes = [Image.open(tiny_voc / "JPEGImages" / f"{i}.jpg").size for i in train + val]
    assert len(set(sizes)) > 1, "image sizes should vary"
    assert all(48 <= s <= 80 for wh in sizes for s in wh), sizes


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    args = dict(num_train=3, num_val=2, size=(40, 48))
    a = _files(generate_synthetic_voc(tmp_path / "a", seed=7, **args))
    b = _files(generate_synthetic_voc(tmp_path / "b", seed=7, **args))
    c = _files(generate_synthetic_voc(tmp_path / "c", seed=8, **args))
    assert a == b
    assert a.keys() == c.keys()
    assert a["JPEGImages/train_00000.jpg"] != c["JPEGImages/train_00000.jpg"]
    assert a["SegmentationClass/val_00001.png"] != c["SegmentationClass/val_00001.png"]


def test_synthetic_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthetic_main(
        [str(tmp_path / "t"), "--num-train", "2", "--num-val", "1", "--size", "32", "40"]
    )
    assert "2 train + 1 val" in capsys.readouterr().out
    assert (tmp_path / "t" / "ImageSets" / "Segmentation" / "val.txt").read_text() == "val_00000\n"


def test_synthetic_void_borders(tiny_voc: Path) -> None:
    for png in sorted((tiny_voc / "SegmentationClass").glob("*.png")):
        label = np.asarray(Image.open(png))
        assert (label == VOID_INDEX).any(), png
        # Two different classes never touch: a void band always separates them.
        for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
            touching = (a != b) & (a != VOID_INDEX) & (b != VOID_INDEX)
            assert not touching.any(), png
        # ...and the band is thin: most of each object survives.
        assert (label == VOID_INDEX).mean() < 0.35


def test_ensure_synthetic_caches_and_reuses(tmp_path: Path) -> None:
    args = dict(num_train=2, num_val=1, size=(32, 32), seed=0)
    first = ensure_synthetic_voc(tmp_path, **args)
    stamp = (first / "synthetic.json").stat().st_mtime_ns
    again = ensure_synthetic_voc(tmp_path, **args)
    assert again == first and (first / "synthetic.json").stat().st_mtime_ns == stamp
    other = ensure_synthetic_voc(tmp_path, **{**args, "seed": 1})
    assert other != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_ensure_synthetic_rejects_incomplete_cache(tmp_path: Path) -> None:
    args = dict(num_train=2, num_val=1, size=(32, 32), seed=0)
    final = ensure_synthetic_voc(tmp_path / "ok", **args)
    (tmp_path / "bad" / final.name).mkdir(parents=True)
    (tmp_path / "bad" / final.name / "junk").write_text("x")
    with pytest.raises(DataError, match="incomplete"):
        ensure_synthetic_voc(tmp_path / "bad", **args)


def _pixels(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    ds = VOCSegmentation(root, split, num_classes=NUM_SYN)
    xs, ys = [], []
    for i in range(len(ds)):
        image, mask = ds.load(i)
        xs.append(image.permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.float32))
        ys.append(mask.reshape(-1).numpy().astype(np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = y != VOID_INDEX
    return x[keep], y[keep]


def _miou(pred: np.ndarray, target: np.ndarray, n: int) -> float:
    cm = np.bincount(target * n + pred, minlength=n * n).reshape(n, n)
    diag = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - diag
    return float((diag[denom > 0] / denom[denom > 0]).mean())


def test_per_pixel_colour_baselines_score_poorly(tmp_path: Path) -> None:
    """A class must not be guessable from a pixel's colour: per-pixel classifiers stay low."""
    root = generate_synthetic_voc(tmp_path / "syn", 60, 30, size=(96, 96), seed=3)
    x_train, y_train = _pixels(root, "train")
    x_val, y_val = _pixels(root, "val")
    means = np.stack([x_train[y_train == c].mean(0) for c in range(NUM_SYN)])
    nearest = np.argmin(((x_val[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    miou_mean = _miou(nearest, y_val, NUM_SYN)

    # A stronger per-pixel model: Bayes over a 16^3 colour histogram (priors included).
    def bins(x: np.ndarray) -> np.ndarray:
        q = (x // 16).astype(np.int64)
        return (q[:, 0] * 16 + q[:, 1]) * 16 + q[:, 2]

    counts = np.stack(
        [np.bincount(bins(x_train[y_train == c]), minlength=16**3) for c in range(NUM_SYN)]
    )
    bayes = (counts + 1).argmax(0)[bins(x_val)]
    miou_bayes = _miou(bayes, y_val, NUM_SYN)
    print(
        f"per-pixel colour baselines on synthetic val: nearest class mean mIoU={miou_mean:.3f}, "
        f"colour-histogram Bayes mIoU={miou_bayes:.3f}"
    )
    assert miou_mean <= 0.35
    assert miou_bayes <= 0.35


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


def _coordinate_pair(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image channels = (4y, 4x, 128); mask = (y % 15) * 16 + x % 15 (never 255)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([4 * yy, 4 * xx, torch.full_like(yy, 128)]).to(torch.uint8)
    mask = ((yy % 15) * 16 + xx % 15).to(torch.uint8)
    return image, mask


def _check_padding(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """255 only in padding, padding is 0 in the image and forms the outside of a rectangle."""
    pad = mask == VOID_INDEX
    assert torch.all(image[:, pad] == 0)
    rows, cols = (~pad).any(1).nonzero(), (~pad).any(0).nonzero()
    content = torch.zeros_like(pad)
    content[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    assert torch.equal(content, ~pad)
    return ~pad


def test_train_transform_is_pixel_exact_without_scaling() -> None:
    source_image, source_mask = _coordinate_pair(50, 60)
    transform = TrainTransform(crop_size=(64, 40), scale_range=(1.0, 1.0))
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        image, mask = transform(source_image, source_mask)
        assert image.dtype == torch.float32 and mask.dtype == torch.uint8
        assert image.shape == (3, 64, 40) and mask.shape == (64, 40)
        content = _check_padding(image, mask)
        assert content.sum() == 50 * 40  # height padded 50->64, width cropped 60->40
        pixels = _unnormalize(image)[content.numpy()]
        y, x = np.rint(pixels[:, 0] / 4).astype(int), np.rint(pixels[:, 1] / 4).astype(int)
        np.testing.assert_array_equal(mask[content].numpy(), (y % 15) * 16 + x % 15)
        row_x = x.reshape(50, 40)[0]
        flips.add(bool(row_x[0] > row_x[-1]))
    assert flips == {True, False}, "horizontal flip should happen sometimes, not always"


def test_train_transform_keeps_alignment_when_scaling() -> None:
    source_image, source_mask = _coordinate_pair(50, 60)
    transform = TrainTransform(crop_size=(80, 72), scale_range=(0.5, 2.0))
    biases = []
    for seed in range(20):
        torch.manual_seed(seed)
        image, mask = transform(source_image, source_mask)
        assert image.shape == (3, 80, 72) and mask.shape == (80, 72)
        content = _check_padding(image, mask)
        pixels = _unnormalize(image)[content.numpy()]
        y, x = pixels[:, 0] / 4, pixels[:, 1] / 4  # the bilinear sample's source position
        m = mask[content].numpy()
        # Source position of the mask's nearest sample minus the image's, per axis.
        dy = (m // 16 - y + 7.5) % 15 - 7.5
        dx = (m % 16 - x + 7.5) % 15 - 7.5
        # Centre-aligned nearest vs bilinear: within half a source pixel (+ antialias at edges).
        assert np.abs(dy).max() <= 0.76 and np.abs(dx).max() <= 0.76, seed
        biases += [dy.mean(), dx.mean()]
    # No systematic shift (legacy NEAREST would put the mask ~0.25 px up-left on average).
    assert abs(np.mean(biases)) < 0.1, biases


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
    assert np.abs(_unnormalize(image) - jpeg).max() < 3  # same JPEG, maybe another IDCT


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


def test_datamodule_generates_synthetic_data(tmp_path: Path) -> None:
    synthetic = {"num_train": 5, "num_val": 2, "size": [40, 40], "seed": 1}
    dm = VOCDataModule(
        root=str(tmp_path / "cache"),
        num_classes=NUM_SYN,
        crop_size=[32, 32],
        batch_size=5,
        num_workers=0,
        synthetic=synthetic,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.data_root.parent == tmp_path / "cache"
    assert len(dm.train_dataset) == 5 and len(dm.val_dataset) == 2
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (5, 3, 32, 32) and masks.shape == (5, 32, 32)
    dm.setup("test")
    assert dm.test_dataset is dm.val_dataset


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


def test_ensure_synthetic_survives_a_race(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    args = dict(num_train=3, num_val=2, size=(32, 32), seed=5)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        roots = list(pool.map(lambda _: ensure_synthetic_voc(cache, **args), range(4)))
    assert len(set(roots)) == 1
    assert [p.name for p in cache.iterdir()] == [roots[0].name]  # no temp folders left
    assert _files(roots[0]) == _files(generate_synthetic_voc(tmp_path / "ref", **args))
