"""The synthetic dataset: a real VOC-format tree, deterministic, cached, and hard for a per-pixel
colour classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn.core.classes import VOID_INDEX, voc_palette
from fcn.core.errors import DataError
from fcn.data import (
    SYNTHETIC_CLASSES,
    VOCDataModule,
    VOCSegmentation,
    ensure_synthetic_voc,
    generate_synthetic_voc,
)
from fcn.data.synthetic import main as synthetic_main

NUM_SYN = len(SYNTHETIC_CLASSES)


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


def test_ensure_synthetic_survives_a_race(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    args = dict(num_train=3, num_val=2, size=(32, 32), seed=5)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        roots = list(pool.map(lambda _: ensure_synthetic_voc(cache, **args), range(4)))
    assert len(set(roots)) == 1
    assert [p.name for p in cache.iterdir()] == [roots[0].name]  # no temp folders left
    assert _files(roots[0]) == _files(generate_synthetic_voc(tmp_path / "ref", **args))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
