"""Joint image + mask transforms: crops, scaling and padding keep image and mask aligned, pixel for
pixel.
"""

from __future__ import annotations

import numpy as np
import torch

from fcn.core.classes import VOID_INDEX
from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from fcn.data import (
    TrainTransform,
)


def _unnormalize(image: torch.Tensor) -> np.ndarray:
    """float 3xHxW normalised -> float HxWx3 in 0..255."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


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
