"""`python -m fcn.predict ckpt_path=FILE input=FILE_OR_DIR [output_dir=DIR]`.

For each image writes `<stem>.png` (palette PNG, VOC colours, the input's size, pixel value =
class index) and `<stem>_overlay.jpg` (the prediction's colours blended over the image).
Every input is listed and its header checked before anything is written, and existing files
are never overwritten unless `overwrite=true`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, read_file

from fcn.classes import voc_palette
from fcn.data.transforms import normalize_image
from fcn.errors import ConfigError, DataError, exit_on_user_error
from fcn.inference import InferenceOptions, load_segmentation_module, predict_logits
from fcn.known_warnings import ignore_known_warnings
from fcn.metrics import argmax_classes
from fcn.resolvers import register_resolvers
from fcn.visualize import colorize

# The config files use fcn's resolvers (sweep job names, --help); dependency warnings that a
# run cannot act on stay quiet (fcn/known_warnings.py).
register_resolvers()
ignore_known_warnings()

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def list_inputs(input_path: str | None) -> list[Path]:
    """The images to predict: the file itself, or the image files of a folder (sorted)."""
    if input_path is None or str(input_path) in ("", "None"):
        raise ConfigError("input is not set: pass input=<image file or folder of images>")
    path = Path(input_path).expanduser()
    if not path.exists():
        raise DataError(f"input={path}: no such file or folder; pass an image or a folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"input={path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "point input at a folder of images"
        )
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(
                f"input={path}: {stems[f.stem].name} and {f.name} would both write {f.stem}.png; "
                "rename one of them"
            )
        stems[f.stem] = f
    return files


def check_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """Read only the header: (height, width); DataError if not an image or too large."""
    try:
        with _own_pixel_limit(), Image.open(path) as im:
            width, height = im.size  # header only: no pixel is decoded here
    except (UnidentifiedImageError, OSError) as err:
        reason = "PIL cannot identify it" if isinstance(err, UnidentifiedImageError) else str(err)
        raise DataError(
            f"input {path} is not an image this tool can read ({reason}): pass a "
            f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} file"
        ) from None
    if width * height > max_pixels:
        raise DataError(
            f"input {path} is {width}x{height} = {width * height:,} pixels, over max_pixels="
            f"{max_pixels:,}: downscale it, or raise max_pixels if the memory is there"
        )
    return height, width


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """PIL's decompression-bomb limit off: check_image's max_pixels decides instead."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_rgb(path: Path) -> torch.Tensor:
    """uint8 3 x H x W. JPEG/PNG go through torchvision's decoders (the ones training and
    evaluation use, so masks match fcn-eval exactly); other formats through PIL."""
    try:
        image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        return image[0] if image.ndim == 4 else image  # an animated GIF: its first frame
    except (RuntimeError, ValueError):
        pass
    try:
        with _own_pixel_limit(), Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"input {path}: cannot decode image ({err}); replace the file") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def output_paths(image: Path, output_dir: Path) -> tuple[Path, Path]:
    return output_dir / f"{image.stem}.png", output_dir / f"{image.stem}_overlay.jpg"


def save_mask(mask: np.ndarray, path: Path) -> None:
    """H x W class indices as a palette PNG (VOC's own label format)."""
    png = Image.fromarray(mask.astype(np.uint8), mode="L")
    png.putpalette(voc_palette())
    png.save(path)


def overlay(image: torch.Tensor, mask: torch.Tensor, alpha: float) -> np.ndarray:
    """H x W x 3 uint8: (1 - alpha) * image + alpha * VOC colour of the predicted class."""
    blend = (1 - alpha) * image.float() + alpha * colorize(mask).float()
    return blend.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device: use auto, cpu or cuda") from None


def predict(cfg: DictConfig) -> list[Path]:
    """Predict every input of `cfg.input`; returns the mask paths written."""
    options = InferenceOptions.from_config(cfg.get("eval"), key="eval")
    max_pixels = cfg.get("max_pixels")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    alpha = float(cfg.get("overlay_alpha", 0.5))
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"overlay_alpha={alpha} must be within [0, 1]")
    device = pick_device(str(cfg.get("device", "auto")))

    # Everything that can be checked is checked before the first file is written.
    inputs = list_inputs(cfg.get("input"))
    for path in inputs:
        check_image(path, max_pixels)
    module = load_segmentation_module(cfg.get("ckpt_path"))
    output_dir = Path(cfg.get("output_dir") or cfg.paths.output_dir).expanduser()
    if not cfg.get("overwrite", False):
        taken = [p for img in inputs for p in output_paths(img, output_dir) if p.exists()]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise ConfigError(
                f"output_dir={output_dir} already holds {taken[0].name}{more}: choose a fresh "
                "output_dir (the default is a new run directory) or pass overwrite=true"
            )
    output_dir.mkdir(parents=True, exist_ok=True)

    model = module.model.to(device)
    written = []
    for path in inputs:
        image = read_rgb(path)
        logits = predict_logits(model, normalize_image(image)[None].to(device), options)
        mask = argmax_classes(logits)[0].cpu()
        mask_path, overlay_path = output_paths(path, output_dir)
        save_mask(mask.numpy(), mask_path)
        Image.fromarray(overlay(image, mask, alpha)).save(overlay_path, quality=90)
        written.append(mask_path)
    print(f"wrote {len(written)} masks <stem>.png and overlays <stem>_overlay.jpg to {output_dir}")
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    # Bad input (checkpoint, files, options) is one line on stderr and exit status 2.
    with exit_on_user_error():
        predict(cfg)


if __name__ == "__main__":
    main()
