#!/usr/bin/env python
"""A small PNG of a checkpoint's predictions on val images: rows of input | truth | prediction.

    python scripts/val_figure.py CKPT VOC_ROOT OUT.png [--count 4] [--stride 1] [--ids ID ...]

Each image is predicted whole at its own size (as validation does), then every panel is shrunk
to at most --max-side pixels a side (label colours stay exact) so the picture stays small
enough to commit. Without --ids it takes --count ids of the val list, every --stride-th from the
first: a rule, not a choice of good-looking results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from fcn.core.errors import DataError, exit_on_user_error  # noqa: E402
from fcn.data.transforms import EvalTransform  # noqa: E402
from fcn.data.voc import VOCSegmentation  # noqa: E402
from fcn.deploy.model_files import rebuild_module  # noqa: E402
from fcn.training.figures import prediction_grid, prediction_row  # noqa: E402
from fcn.training.metrics import argmax_classes  # noqa: E402


def figure(
    ckpt: Path,
    root: Path,
    ids: list[str] | None,
    count: int = 4,
    stride: int = 1,
    max_side: int = 200,
    split: str = "val",
) -> torch.Tensor:
    """The 3 x H x W uint8 picture for `ids` (or `count` ids of `split`, every `stride`-th)."""
    module = rebuild_module(ckpt)
    num_classes = int(module.hparams.num_classes)
    dataset = VOCSegmentation(root, split, "SegmentationClass", num_classes, EvalTransform())
    wanted = ids or dataset.ids[::stride][:count]
    unknown = [i for i in wanted if i not in dataset.ids]
    if unknown:
        raise DataError(
            f"--ids {' '.join(unknown)}: not in {root}/ImageSets/Segmentation/{split}.txt"
        )
    rows = []
    with torch.no_grad():
        for image_id in wanted:
            image, mask = dataset[dataset.ids.index(image_id)]
            pred = argmax_classes(module.model(image[None]))[0]
            rows.append(prediction_row(image, mask, pred, max_side))
    return prediction_grid(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path, help="a checkpoint written by fcn-train")
    parser.add_argument("root", type=Path, help="the VOC tree (ImageSets, JPEGImages, ...)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--count", type=int, default=4, help="how many val images (default 4)")
    parser.add_argument("--stride", type=int, default=1, help="every Nth val id from the first")
    parser.add_argument("--ids", nargs="+", default=None, help="these val ids instead")
    parser.add_argument("--max-side", type=int, default=200, help="panel size cap in pixels")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        grid = figure(args.ckpt, args.root, args.ids, args.count, args.stride, args.max_side)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(args.out, optimize=True)
    print(f"{args.out}: {grid.shape[2]}x{grid.shape[1]}, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
