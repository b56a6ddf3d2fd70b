"""`data.gpu_augment=true`: the loader workers only decode and draw the augmentation; the
resize, flip, normalisation and padding run on the batch once it is on the training device.

The workers' share per image drops from decode + transforms + collate of float crops to decode
and a uint8 collate (a quarter of the bytes). The random draws are those of TrainTransform, in
the same order (RandomScaleCrop, the flip, NormalizePad's offset) and applied by the same
torchvision kernels, so a seeded image gets the same crop, scale and flip on either path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fcn.core.classes import VOID_INDEX
from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from fcn.data.transforms import NormalizePad, RandomScaleCrop

# One row per image: the source region, the size it is resized to, the flip, the pad offset.
PARAM_FIELDS = ("top", "left", "height", "width", "out_h", "out_w", "flip", "pad_top", "pad_left")


class DeferredTrainTransform:
    """Worker side: the uint8 pair as decoded and its augmentation drawn as one int64 row."""

    def __init__(
        self,
        crop_size: Sequence[int] = (320, 480),
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: bool = True,
    ) -> None:
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scale_crop = RandomScaleCrop(self.crop_size, scale_range)
        self.pad = NormalizePad(self.crop_size)
        self.hflip = hflip

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        crop = self.scale_crop.make_params([tv_tensors.Image(image)])
        # v2.RandomHorizontalFlip's draw: flip when torch.rand(1) < p.
        flip = bool(self.hflip and torch.rand(1).item() < 0.5)
        out_h, out_w = crop["size"]
        pad = self.pad.make_params([tv_tensors.Mask(torch.empty(out_h, out_w))])
        row = [crop["top"], crop["left"], crop["height"], crop["width"], out_h, out_w]
        params = torch.tensor([*row, int(flip), pad["top"], pad["left"]], dtype=torch.int64)
        return image, mask, params

    def __repr__(self) -> str:
        return f"DeferredTrainTransform(crop_size={self.crop_size}, hflip={self.hflip})"


def deferred_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images and masks of different sizes padded into one batch (bottom/right; the
    padding is never read: each row's region lies inside its own image), params stacked."""
    h = max(image.shape[-2] for image, _, _ in batch)
    w = max(image.shape[-1] for image, _, _ in batch)
    images = torch.zeros((len(batch), 3, h, w), dtype=torch.uint8)
    masks = torch.full((len(batch), h, w), VOID_INDEX, dtype=torch.uint8)
    for i, (image, mask, _) in enumerate(batch):
        images[i, :, : image.shape[-2], : image.shape[-1]] = image
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks, torch.stack([params for _, _, params in batch])


def apply_on_device(
    images: torch.Tensor, masks: torch.Tensor, params: torch.Tensor, crop_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Device side: each image's region resized (bilinear with antialias, as TrainTransform;
    masks NEAREST_EXACT), flipped, normalised and padded into float crops (pad 0, mask void)."""
    n, (ch, cw) = len(images), (int(crop_size[0]), int(crop_size[1]))
    out = torch.zeros((n, 3, ch, cw), dtype=torch.float32, device=images.device)
    out_masks = torch.full((n, ch, cw), VOID_INDEX, dtype=torch.uint8, device=masks.device)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1)
    scale, shift = (
        1.0 / (255.0 * std),
        torch.tensor(IMAGENET_MEAN, device=std.device).view(3, 1, 1) / std,
    )
    for i, row in enumerate(params.tolist()):  # one host copy of the params per batch
        top, left, height, width, out_h, out_w, flip, pad_top, pad_left = row
        region = images[i, :, top : top + height, left : left + width]
        image = F.resize_image(
            region, [out_h, out_w], v2.InterpolationMode.BILINEAR, antialias=True
        )
        label = F.resize_image(
            masks[i, None, top : top + height, left : left + width],
            [out_h, out_w],
            interpolation=v2.InterpolationMode.NEAREST_EXACT,
            antialias=False,
        )[0]
        if flip:
            image, label = image.flip(-1), label.flip(-1)
        window = (slice(pad_top, pad_top + out_h), slice(pad_left, pad_left + out_w))
        out[i][(slice(None), *window)] = image.float().mul_(scale).sub_(shift)
        out_masks[i][window] = label
    return out, out_masks


def is_deferred_batch(batch: Any) -> bool:
    """A training batch of DeferredTrainTransform: (uint8 images, masks, int64 params)."""
    return (
        isinstance(batch, (tuple, list))
        and len(batch) == 3
        and batch[0].dtype == torch.uint8
        and batch[2].shape[-1] == len(PARAM_FIELDS)
    )
