"""Tiny generated datasets in the layouts `data=folder` reads: stem lists, pair lists, split
folders, Cityscapes' and ADE20K's published layouts, RGB colour-coded masks.

Every sample is a 64x64 image of class rectangles on class 0, each class in its own colour plus
noise (so a model can learn it); the mask holds `raw[class]` (the dataset's own values).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["ground", "tree", "house", "water"]
PALETTE = [[10, 200, 10], [0, 90, 0], [200, 40, 40], [30, 60, 220]]
SIZE = 64


def sample(
    seed: int, num_classes: int = 4, void: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 image, H x W class indices, void pixels = 255)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for cls in range(1, num_classes):
        y, x = rng.integers(0, SIZE - 20, size=2)
        h, w = rng.integers(12, 20, size=2)
        label[y : y + h, x : x + w] = cls
    label[:, :2] = 255 if void is None else void  # a void band on the left edge
    colours = np.random.default_rng(99).integers(0, 256, size=(256, 3))
    image = colours[label].astype(np.float64) + rng.normal(0, 10, size=(SIZE, SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def save_index(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def save_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def raw_values(label: np.ndarray, raw: Sequence[int], void: int) -> np.ndarray:
    """Class indices -> the dataset's own mask values (`raw[c]`; 255 -> `void`)."""
    table = np.full(256, void, dtype=np.uint8)
    table[: len(raw)] = raw
    return table[label]


def stem_list_tree(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """images/<stem>.jpg + masks/<stem>.png, train.txt / val.txt of stems."""
    for split, count, offset in (("train", n_train, 0), ("val", n_val, 100)):
        stems = [f"{split}_{i}" for i in range(count)]
        for i, stem in enumerate(stems):
            image, label = sample(offset + i)
            save_image(root / "images" / f"{stem}.jpg", image)
            save_index(root / "masks" / f"{stem}.png", label)
        (root / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def pair_list_tree(root: Path, void: int = 4, n_train: int = 4, n_val: int = 2) -> Path:
    """SegNet/CamVid style: train/*.png with trainannot/*.png (void = `void`), lists of
    "image mask" paths (DeepLab's leading '/')."""
    for split, count, offset in (("train", n_train, 0), ("val", n_val, 100)):
        lines = []
        for i in range(count):
            image, label = sample(offset + i)
            save_image(root / split / f"f{i:03d}.png", image)
            save_index(root / f"{split}annot" / f"f{i:03d}.png", raw_values(label, range(4), void))
            lines.append(f"/{split}/f{i:03d}.png /{split}annot/f{i:03d}.png\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root


def split_folder_tree(
    root: Path, rgb_masks: bool = False, n_train: int = 4, n_val: int = 2
) -> Path:
    """images/{train,val}/*.png with masks/{train,val}/*.png (index PNGs, or RGB in PALETTE
    with void in black)."""
    for split, count, offset in (("train", n_train, 0), ("val", n_val, 100)):
        for i in range(count):
            image, label = sample(offset + i)
            save_image(root / "images" / split / f"s{i}.png", image)
            if rgb_masks:
                colours = np.zeros((256, 3), dtype=np.uint8)  # void: black
                colours[:4] = PALETTE
                save_image(root / "masks" / split / f"s{i}.png", colours[label])
            else:
                save_index(root / "masks" / split / f"s{i}.png", label)
    return root


# Cityscapes label ids of the four classes drawn: road (7), vegetation (21), building (11), car (26)
CITYSCAPES_IDS = [7, 21, 11, 26]


def cityscapes_tree(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelIds.png (ids;
    void as 0 = unlabeled), with the other gtFine files beside them."""
    for split, count, offset in (("train", n_train, 0), ("val", n_val, 100)):
        for i in range(count):
            city = ("aachen", "bremen")[i % 2]
            stem = f"{city}_{i:06d}_000019"
            image, label = sample(offset + i)
            save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image)
            gt = root / "gtFine" / split / city
            save_index(gt / f"{stem}_gtFine_labelIds.png", raw_values(label, CITYSCAPES_IDS, 0))
            save_index(gt / f"{stem}_gtFine_instanceIds.png", label)
            save_image(gt / f"{stem}_gtFine_color.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    return root


def ade20k_tree(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/.../*.png (0 =
    other, class c stored as c + 1)."""
    root = root / "ADEChallengeData2016"
    for split, count, offset in (("training", n_train, 0), ("validation", n_val, 100)):
        for i in range(count):
            stem = f"ADE_{split[:5]}_{i + 1:08d}"
            image, label = sample(offset + i)
            save_image(root / "images" / split / f"{stem}.jpg", image)
            save_index(
                root / "annotations" / split / f"{stem}.png", raw_values(label, [1, 2, 3, 4], 0)
            )
    return root
