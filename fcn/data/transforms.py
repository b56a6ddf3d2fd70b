"""Joint image+mask transforms on torchvision.transforms.v2 (masks always resized nearest).

Geometric ops run on uint8 (cheap, and bilinear uint8 resize has a fast path); conversion to
float and normalisation happen on the crop, and padding comes last so padded pixels are
exactly 0 in the normalised image and 255 (void) in the mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from fcn.classes import VOID_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 ImageNet-normalised."""
    image = F.to_dtype(image, torch.float32, scale=True)
    return F.normalize(image, IMAGENET_MEAN, IMAGENET_STD)


class RandomScale(v2.Transform):
    """Resize by one random factor in `scale_range` (relative to the input's own size)."""

    def __init__(self, scale_range: Sequence[float]) -> None:
        super().__init__()
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
        self.scale_range = (lo, hi)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        lo, hi = self.scale_range
        s = lo + (hi - lo) * torch.rand(()).item()
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            # torchvision's mask kernel uses legacy NEAREST (floor(dst * f)), which shifts the
            # mask up-left of the bilinear image by up to half a source pixel per axis;
            # NEAREST_EXACT samples pixel centres, the same geometry as the image.
            out = F.resize_image(
                inpt.as_subclass(torch.Tensor)[None],
                params["size"],
                interpolation=v2.InterpolationMode.NEAREST_EXACT,
                antialias=False,
            )[0]
            return tv_tensors.wrap(out, like=inpt)
        return self._call_kernel(
            F.resize,
            inpt,
            size=params["size"],
            interpolation=v2.InterpolationMode.BILINEAR,
            antialias=True,
        )


class RandomCropAtMost(v2.Transform):
    """Random crop of min(size, input size) per side: never fails on small inputs, never pads."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        ch, cw = min(h, self.size[0]), min(w, self.size[1])
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        return {"top": top, "left": left, "height": ch, "width": cw}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class _PairTransform:
    """Wrap a v2 pipeline: plain uint8 tensors in, plain (float image, int64 mask) out."""

    pipeline: v2.Transform

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image_out, mask_out = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image_out.as_subclass(torch.Tensor), mask_out.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


class TrainTransform(_PairTransform):
    """Random scale, random crop to `crop_size` (padding small images), flip, normalise."""

    def __init__(
        self,
        crop_size: Sequence[int] = (320, 480),
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: bool = True,
    ) -> None:
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        steps: list[v2.Transform] = [
            RandomScale(scale_range),
            RandomCropAtMost(self.crop_size),
        ]
        if hflip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        steps += [
            v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            # After normalisation: padding 0 is the mean colour; the mask pads with void.
            # Content smaller than the crop lands at a random offset.
            v2.RandomCrop(
                self.crop_size,
                pad_if_needed=True,
                fill={tv_tensors.Image: 0.0, tv_tensors.Mask: VOID_INDEX},
            ),
        ]
        self.pipeline = v2.Compose(steps)


class EvalTransform:
    """Whole image, normalised; mask to int64."""

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize_image(image), mask.to(torch.int64)

    def __repr__(self) -> str:
        return "EvalTransform()"
