"""Reading images to predict and writing what is predicted: palette PNG masks and overlays.

Shared by fcn-predict and the Python API (`fcn.load_segmenter`), so both read an image with
the same decoder and draw a mask in the same colours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, read_file

from fcn.core.classes import VOC_COLOURS
from fcn.core.errors import ConfigError, DataError

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


def palette_image(mask: np.ndarray, colours: Sequence[Sequence[int]] = VOC_COLOURS) -> Image.Image:
    """H x W class indices (0-255) as a PIL palette image in `colours` (VOC's label format)."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette([v for rgb in colours for v in rgb])
    return image


def save_mask(mask: np.ndarray, path: Path, colours: Sequence[Sequence[int]] = VOC_COLOURS) -> None:
    """H x W class indices as a palette PNG (VOC's own label format)."""
    palette_image(mask, colours).save(path)


def overlay(
    image: torch.Tensor,
    mask: torch.Tensor,
    alpha: float,
    colours: Sequence[Sequence[int]] = VOC_COLOURS,
) -> np.ndarray:
    """H x W x 3 uint8: the class colours blended over `image` (3 x H x W uint8) by PIL's
    `Image.blend`, image + alpha * (colour - image) rounded down (1 - alpha of the image)."""
    classes = np.clip(np.asarray(mask.cpu()), 0, 255)
    tint = palette_image(classes, colours).convert("RGB")
    base = Image.fromarray(np.ascontiguousarray(image.cpu().permute(1, 2, 0).numpy()))
    return np.asarray(Image.blend(base, tint, alpha))
