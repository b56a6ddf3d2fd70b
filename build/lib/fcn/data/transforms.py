"""Joint image+mask transforms on torchvision.transforms.v2 (masks always resized nearest).

Geometric ops run on uint8 (cheap, and bilinear uint8 resize has a fast path); conversion to
float and normalisation happen on the crop, and padding comes last so padded pixels are
exactly 0 in the normalised image and 255 (void) in the mask. Masks stay uint8 (as stored in
the PNG): a quarter of the bytes of int64 to copy between loader processes; the LightningModule
casts them for the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2 import query_size

from fcn.core.classes import VOID_INDEX
from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD, normalize_image


class RandomScaleCrop(v2.Transform):
    """Scale by a random factor in `scale_range`, then take a random crop of at most `size`.

    Done as one resize: the source region that maps onto the crop is cut out first and only
    that region is resized (`resized_crop`), so a large scale never resizes the whole image.
    Never pads and never fails on small inputs (the crop is min(size, scaled size) per side).
    """

    def __init__(self, size: Sequence[int], scale_range: Sequence[float]) -> None:
        super().__init__()
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
        self.size = (int(size[0]), int(size[1]))
        self.scale_range = (lo, hi)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        lo, hi = self.scale_range
        s = lo + (hi - lo) * torch.rand(()).item()
        out_h = min(max(1, round(h * s)), self.size[0])
        out_w = min(max(1, round(w * s)), self.size[1])
        src_h, src_w = min(h, max(1, round(out_h / s))), min(w, max(1, round(out_w / s)))
        top = int(torch.randint(0, h - src_h + 1, ()).item())
        left = int(torch.randint(0, w - src_w + 1, ()).item())
        return {"top": top, "left": left, "height": src_h, "width": src_w, "size": [out_h, out_w]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            # torchvision's mask kernel uses legacy NEAREST (floor(dst * f)), which shifts the
            # mask up-left of the bilinear image by up to half a source pixel per axis;
            # NEAREST_EXACT samples pixel centres, the same geometry as the image.
            top, left = params["top"], params["left"]
            region = inpt.as_subclass(torch.Tensor)[
                ..., top : top + params["height"], left : left + params["width"]
            ]
            out = F.resize_image(
                region[None],
                params["size"],
                interpolation=v2.InterpolationMode.NEAREST_EXACT,
                antialias=False,
            )[0]
            return tv_tensors.wrap(out, like=inpt)
        return self._call_kernel(
            F.resized_crop,
            inpt,
            **params,
            interpolation=v2.InterpolationMode.BILINEAR,
            antialias=True,
        )


class NormalizePad(v2.Transform):
    """uint8 image -> float32 ImageNet-normalised, zero-padded up to `size` at a random offset;
    uint8 mask padded with void. One output allocation each, the crop written straight into
    it; padding comes after normalisation, so padded pixels are exactly 0 (the mean colour)."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift
        self.scale = 1.0 / (255.0 * std)
        self.shift = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) / std

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        top = int(torch.randint(0, self.size[0] - h + 1, ()).item()) if h < self.size[0] else 0
        left = int(torch.randint(0, self.size[1] - w + 1, ()).item()) if w < self.size[1] else 0
        return {"top": top, "left": left, "height": h, "width": w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        src = inpt.as_subclass(torch.Tensor)
        is_mask = isinstance(inpt, tv_tensors.Mask)
        if is_mask:
            out = torch.full((*src.shape[:-2], *self.size), VOID_INDEX, dtype=torch.uint8)
        else:
            out = torch.zeros((*src.shape[:-2], *self.size), dtype=torch.float32)
        top, left = params["top"], params["left"]
        content = out[..., top : top + params["height"], left : left + params["width"]]
        content.copy_(src)
        if not is_mask:
            content.mul_(self.scale).sub_(self.shift)
        return tv_tensors.wrap(out, like=inpt)


class _PairTransform:
    """Wrap a v2 pipeline: plain uint8 tensors in, plain (float image, uint8 mask) out."""

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
        steps: list[v2.Transform] = [RandomScaleCrop(self.crop_size, scale_range)]
        if hflip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        # Content smaller than the crop lands at a random offset.
        steps.append(NormalizePad(self.crop_size))
        self.pipeline = v2.Compose(steps)


class EvalTransform:
    """Whole image, normalised; mask as it is (uint8)."""

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize_image(image), mask

    def __repr__(self) -> str:
        return "EvalTransform()"
