"""The PASCAL VOC classes, their colormap and the void label, and drawing a mask in colours:
the one place they live."""

from collections.abc import Sequence

import torch

VOID_INDEX = 255

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant",
    "sheep", "sofa", "train", "tv/monitor",
)  # fmt: skip

VOC_COLORMAP: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
)  # fmt: skip

# VOC draws void (255) in this cream colour.
VOID_COLOR: tuple[int, int, int] = (224, 224, 192)


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The standard VOC bit-interleaved colormap for `n` indices (index 255 is the void colour)."""
    cmap = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap.append((r, g, b))
    return cmap


def voc_palette() -> list[int]:
    """A flat 768-value palette for `PIL.Image.putpalette`, as VOC's own label PNGs carry."""
    return [v for rgb in voc_colormap(256) for v in rgb]


# index -> RGB for all 256 label values (255: the void colour), as VOC's label PNGs carry
VOC_COLOURS: tuple[tuple[int, int, int], ...] = tuple(voc_colormap(256))


def colour_mask(mask: torch.Tensor, colours: Sequence[Sequence[int]] = VOC_COLOURS) -> torch.Tensor:
    """H x W class indices -> H x W x 3 uint8 on the CPU, each pixel in its class's colour
    (`colours`: 256 RGB entries)."""
    table = torch.tensor(colours, dtype=torch.uint8)
    return table[mask.long().clamp(0, 255).cpu()]


def class_names(num_classes: int) -> list[str]:
    """VOC names for the first `num_classes` indices; generic names past the 21 VOC classes."""
    return [VOC_CLASSES[i] if i < len(VOC_CLASSES) else f"class_{i}" for i in range(num_classes)]
