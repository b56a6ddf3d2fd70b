"""Class colours and the void label, and drawing a mask in colours. No dataset's class names live
here: they are data (`data.classes`, conf/data/*.yaml) and travel in checkpoints and exports."""

from collections.abc import Sequence

import torch

VOID_INDEX = 255

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


def numbered_class_names(num_classes: int) -> list[str]:
    """`class_0`, `class_1`, ...: the names of classes that a config or checkpoint never named."""
    return [f"class_{i}" for i in range(num_classes)]


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours for `num_classes` classes (up to 255): VOC's bit-interleaved colormap."""
    return voc_colormap(256)[:num_classes]


def colour_table(palette: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """256 RGB entries for drawing masks: the classes' `palette`, then the default colormap
    (void, 255, in VOC's cream)."""
    table = voc_colormap(256)
    table[: len(palette)] = [(int(r), int(g), int(b)) for r, g, b in palette]
    return table
