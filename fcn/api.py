"""A small Python API for notebooks: `from fcn import load_segmenter`.

    seg = load_segmenter("model.onnx")          # or a .ckpt from fcn-train, or a .pt2
    mask = seg.predict("photo.jpg")             # H x W uint8 class indices, the photo's size
    seg.classes[mask[100, 200]]                 # the class name at row 100, column 200
    Image.fromarray(seg.overlay("photo.jpg", mask))

`predict` runs exactly what `fcn-predict` runs (same decoder for paths, same normalisation,
the same `eval` options around the same backends), so its masks equal the PNGs it writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcn.core.classes import colour_mask
from fcn.core.errors import DataError
from fcn.deploy.image_files import check_image, overlay, read_rgb
from fcn.deploy.inference import predict_masks
from fcn.deploy.model_files import LoadedModel, load_model
from fcn.deploy.model_info import ModelInfo
from fcn.models.inference import InferenceOptions

# Paths are refused above this many pixels before decoding, as fcn-predict's default does.
MAX_PIXELS = 40_000_000
ImageLike = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


class Segmenter:
    """A loaded FCN (any backend) with the test-time options it predicts with."""

    def __init__(self, loaded: LoadedModel, options: InferenceOptions, device: torch.device):
        self.loaded = loaded
        self.options = options
        self.device = device
        self._colours = loaded.info.colour_table()

    @property
    def classes(self) -> list[str]:
        """Class names by index: `classes[mask[y, x]]`."""
        return list(self.loaded.info.class_names)

    @property
    def info(self) -> ModelInfo:
        """Backbone, head, palette, normalisation and training-config hash."""
        return self.loaded.info

    def predict(self, image: ImageLike) -> np.ndarray:
        """H x W uint8 class indices at the image's own size."""
        rgb = as_rgb_tensor(image)
        masks = predict_masks(self.loaded.network, rgb[None].to(self.device), self.options)
        return masks[0].numpy()

    def colorize(self, mask: np.ndarray | torch.Tensor) -> np.ndarray:
        """H x W x 3 uint8: each pixel in its class's colour."""
        return colour_mask(_as_mask(mask), self._colours).numpy()

    def overlay(
        self, image: ImageLike, mask: np.ndarray | torch.Tensor, alpha: float = 0.5
    ) -> np.ndarray:
        """H x W x 3 uint8: image + alpha * (class colour - image), rounded down
        (fcn-predict's overlay)."""
        rgb, mask = as_rgb_tensor(image), _as_mask(mask)
        if tuple(rgb.shape[-2:]) != tuple(mask.shape):
            raise DataError(
                f"overlay: image is {rgb.shape[-2]}x{rgb.shape[-1]} but the mask is "
                f"{mask.shape[0]}x{mask.shape[1]}; pass the mask predicted for this image"
            )
        return overlay(rgb, mask, alpha, self._colours)

    def __repr__(self) -> str:
        info = self.loaded.info
        return (
            f"Segmenter({info.backbone}/{info.head}, {info.num_classes} classes, "
            f"backend={self.loaded.backend}, {self.options.mode}, path={self.loaded.path})"
        )


def load_segmenter(
    path: str | os.PathLike,
    backend: str | None = None,
    device: str | torch.device = "cpu",
    allow_modules: Iterable[str] | None = None,
    **eval_options: Any,
) -> Segmenter:
    """Load a checkpoint (.ckpt), ONNX (.onnx) or torch.export (.pt2) file for prediction.

    `backend` defaults to the one the suffix names; `eval_options` are fcn-eval's `eval`
    block (mode="slide", window=(512, 512), stride=(341, 341), flip=True, scales=[...]).
    Files are read with the project's safe loading (no code from them runs); a checkpoint
    naming your own classes (`backbone._target_`) is rebuilt only when their top-level package
    is in `allow_modules`.
    """
    options = InferenceOptions.from_config(eval_options, key="load_segmenter")
    device = torch.device(device)
    loaded = load_model(path, backend, device, key="path", allow_modules=allow_modules)
    return Segmenter(loaded, options, device)


def as_rgb_tensor(image: ImageLike) -> torch.Tensor:
    """A PIL image, an H x W x 3 uint8 array, a 3 x H x W uint8 tensor or an image path ->
    3 x H x W uint8 tensor (paths through fcn-predict's decoder)."""
    if isinstance(image, str | os.PathLike):
        path = Path(image).expanduser()
        if not path.is_file():
            raise DataError(f"image {path}: no such file")
        check_image(path, MAX_PIXELS)
        return read_rgb(path)
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(
                f"image array must be H x W x 3 uint8 (RGB), got {image.dtype} {image.shape}"
            )
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise DataError(
                f"image tensor must be 3 x H x W uint8 (RGB), got {image.dtype} "
                f"{tuple(image.shape)}"
            )
        return image.cpu()
    raise DataError(
        "image must be a PIL image, an H x W x 3 uint8 array, a 3 x H x W uint8 tensor or a "
        f"file path, got {type(image).__name__}"
    )


def _as_mask(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
        raise DataError(f"mask must be H x W class indices, got {getattr(mask, 'shape', mask)}")
    return tensor.cpu()
