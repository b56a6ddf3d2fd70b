"""A deterministic synthetic VOC tree whose classes need spatial context to tell apart.

Each object's class is its SHAPE and TEXTURE (disc = polka dots, square = checkerboard,
triangle = horizontal stripes, ring = plain annulus, cross = vertical stripes); colours are
drawn per instance from the same distribution as the background's, so a pixel's colour alone
says little. Shapes turn at random; textures stay upright at one scale (period 8-12 px), so a
window of a few periods tells most classes apart and the outline settles the rest.
Labels are palette PNGs with a void (255) band along every outline, as in VOC.

    python -m fcn.data.synthetic ROOT [--num-train N] [--num-val N] [--size H W] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fcn.core.classes import VOID_INDEX, voc_palette
from fcn.core.errors import DataError

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "square", "triangle", "ring", "cross")
# Bump when the drawing changes, so cached trees from older code are not reused.
GENERATOR_VERSION = 5
JPEG_QUALITY = 90
META_FILE = "synthetic.json"
_SPLIT_CODES = {"train": 0, "val": 1}


def _colour_pair(rng: np.random.Generator) -> np.ndarray:
    """Two uniform RGB colours far enough apart for their texture to show."""
    while True:
        pair = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
        if np.abs(pair[0] - pair[1]).sum() >= 150:
            return pair


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A smooth linear gradient between two random colours, in a random direction."""
    c1, c2 = _colour_pair(rng)
    phi = rng.uniform(0, 2 * np.pi)
    t = yy * np.sin(phi) + xx * np.cos(phi)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return c1 + (c2 - c1) * t[..., None]


def _object(
    rng: np.random.Generator, cls: int, h: int, w: int
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """One object of class `cls`: (its bounding box, boolean mask and RGB texture in the box)."""
    s = min(h, w) * rng.uniform(0.3, 0.65)  # object extent in pixels
    cy = rng.uniform(0.1 * h, 0.9 * h)
    cx = rng.uniform(0.1 * w, 0.9 * w)
    theta = rng.uniform(0, 2 * np.pi)
    # Work in a box around the object only (every shape fits within 0.75 s of its centre).
    reach = 0.75 * s + 1
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    # Local coordinates turn with the object: they draw its outline.
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    half = s / 2
    # Textures stay upright (image axes, random phase) at one scale: what tells classes apart
    # is the pattern, not its angle or size.
    period = rng.uniform(8.0, 12.0)
    c1, c2 = _colour_pair(rng)
    name = SYNTHETIC_CLASSES[cls]
    du = np.mod(xx + rng.uniform(0, period), period) - period / 2  # centred in its cell
    dv = np.mod(yy + rng.uniform(0, period), period) - period / 2
    if name == "disc":
        mask = np.hypot(u, v) <= half
        pattern = du * du + dv * dv <= (0.38 * period) ** 2
    elif name == "square":
        mask = (np.abs(u) <= half) & (np.abs(v) <= half)
        pattern = (du < 0) ^ (dv < 0)
    elif name == "triangle":
        r = 0.7 * s  # circumradius: an area comparable to the other shapes
        mask = (v >= -r / 2) & (np.sqrt(3) * u + v <= r) & (-np.sqrt(3) * u + v <= r)
        pattern = np.abs(dv) <= period / 4
    elif name == "ring":
        rho = np.hypot(u, v)
        mask = (rho <= half) & (rho >= half * rng.uniform(0.45, 0.65))
        pattern = np.zeros_like(mask)
    elif name == "cross":
        arm = s * rng.uniform(0.28, 0.4) / 2
        mask = ((np.abs(u) <= half) & (np.abs(v) <= arm)) | (
            (np.abs(v) <= half) & (np.abs(u) <= arm)
        )
        pattern = np.abs(du) <= period / 4
    else:  # pragma: no cover - SYNTHETIC_CLASSES and this switch change together
        raise ValueError(f"no drawing for class {name!r}")
    texture = np.where(pattern[..., None], c2, c1)
    return (slice(y0, y1), slice(x0, x1)), mask, texture


def _void_borders(label: np.ndarray) -> np.ndarray:
    """Mark as void every pixel whose 3x3 neighbourhood holds two labels (a ~2 px band)."""
    h, w = label.shape
    padded = np.pad(label, 1, mode="edge")
    views = [padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    stack = np.stack(views)
    edge = stack.max(axis=0) != stack.min(axis=0)
    out = label.copy()
    out[edge] = VOID_INDEX
    return out


def render_sample(
    seed: int, split: str, index: int, size: Sequence[int] = (128, 128)
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, label uint8 HxW), fully determined by (seed, split, index)."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    h = max(8, round(size[0] * rng.uniform(0.75, 1.25)))
    w = max(8, round(size[1] * rng.uniform(0.75, 1.25)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, yy, xx)
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):  # later objects are drawn on top
        cls = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        box, mask, texture = _object(rng, cls, h, w)
        image[box][mask] = texture[mask]
        label[box][mask] = cls
    image += rng.normal(0.0, 8.0, size=image.shape).astype(np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, _void_borders(label)


def generate_synthetic_voc(
    root: str | os.PathLike,
    num_train: int = 600,
    num_val: int = 100,
    size: Sequence[int] = (128, 128),
    seed: int = 0,
) -> Path:
    """Write a VOC tree (JPEGImages, SegmentationClass palette PNGs, split lists) into `root`.

    The same arguments give byte-identical files (no timestamps, per-image seeded RNGs).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"need at least one image per split, got {num_train=} {num_val=}")
    root = Path(root)
    images, labels = root / "JPEGImages", root / "SegmentationClass"
    lists = root / "ImageSets" / "Segmentation"
    for d in (images, labels, lists):
        d.mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            image_id = f"{split}_{i:05d}"
            image, label = render_sample(seed, split, i, size)
            Image.fromarray(image).save(images / f"{image_id}.jpg", quality=JPEG_QUALITY)
            png = Image.fromarray(label)
            png.putpalette(palette)  # 'L' -> 'P', VOC's own label format
            png.save(labels / f"{image_id}.png")
            splits[split].append(image_id)
    splits["trainval"] = splits["train"] + splits["val"]
    for split, ids in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    meta = {
        "generator_version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "size": [int(size[0]), int(size[1])],
        "seed": seed,
        "classes": list(SYNTHETIC_CLASSES),
    }
    (root / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return root


def synthetic_key(num_train: int, num_val: int, size: Sequence[int], seed: int) -> str:
    """The cache folder name for one set of generator arguments."""
    h, w = int(size[0]), int(size[1])
    return f"voc_v{GENERATOR_VERSION}_n{num_train}-{num_val}_{h}x{w}_seed{seed}"


def ensure_synthetic_voc(
    cache_dir: str | os.PathLike,
    num_train: int = 600,
    num_val: int = 100,
    size: Sequence[int] = (128, 128),
    seed: int = 0,
) -> Path:
    """The tree for these arguments under `cache_dir`, generated once and reused after.

    Safe when several processes race: each writes a private temp folder and renames it into
    place; the loser discards its copy. A finished tree always holds META_FILE.
    """
    cache_dir = Path(cache_dir).expanduser()
    final = cache_dir / synthetic_key(num_train, num_val, size, seed)
    if (final / META_FILE).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        generate_synthetic_voc(tmp, num_train, num_val, size, seed)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / META_FILE).is_file():  # not a lost race: a stale folder
                raise DataError(
                    f"synthetic data folder {final} exists but is incomplete: delete it and "
                    f"run again"
                ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fcn.data.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("root", help="output folder (the VOC root)")
    parser.add_argument("--num-train", type=int, default=600)
    parser.add_argument("--num-val", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = generate_synthetic_voc(args.root, args.num_train, args.num_val, args.size, args.seed)
    print(f"wrote {args.num_train} train + {args.num_val} val pairs to {root}")


if __name__ == "__main__":
    main()
