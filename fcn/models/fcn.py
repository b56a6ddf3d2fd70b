"""The FCN model: backbone features -> score head, exact output size for any H, W >= 32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Total stride of every backbone: inputs are padded to a multiple of this.
STRIDE = 32


def _graph_capture() -> bool:
    """True while tracing/exporting, where shape-dependent branches would freeze one size."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


class FCN(nn.Module):
    """`N x 3 x H x W` images -> `N x num_classes x H x W` logits for any H, W >= 32.

    The input is zero-padded bottom/right to the next multiple of 32 so every stride lines up
    exactly, and the logits are cropped back; the top-left pixel keeps its place, so no offset
    crop (the paper's crop layers) is needed.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        backbone_name: str = "",
        head_name: str = "",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.backbone_name = backbone_name
        self.head_name = head_name

    def forward(self, x: Tensor) -> Tensor:
        if _graph_capture():
            # Always pad and crop (by 0 when aligned) so the graph stays valid for every size.
            return self._padded(x)
        h, w = x.shape[-2:]
        if h < STRIDE or w < STRIDE:
            raise ValueError(f"FCN input must be at least {STRIDE}x{STRIDE} pixels, got {h}x{w}")
        if h % STRIDE or w % STRIDE:
            return self._padded(x)
        return self.head(self.backbone(x))

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Training with an auxiliary head: the logits (as forward, always padded) and the
        backbone's features of the padded input."""
        h, w = x.shape[-2], x.shape[-1]
        pad_h, pad_w = (-h) % STRIDE, (-w) % STRIDE
        features = self.backbone(F.pad(x, (0, pad_w, 0, pad_h)))
        return self.head(features)[..., :h, :w], features

    def _padded(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pad_h, pad_w = (-h) % STRIDE, (-w) % STRIDE
        logits = self.head(self.backbone(F.pad(x, (0, pad_w, 0, pad_h))))
        if _graph_capture():
            # Cropped by negative padding (a copy): torch.export guards on whether a sliced
            # view is contiguous, which would pin the graph to sizes off (or on) the 32 grid.
            return F.pad(logits, (0, -pad_w, 0, -pad_h))
        return logits[..., :h, :w]
