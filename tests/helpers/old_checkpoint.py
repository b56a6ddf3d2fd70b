"""The checkpoint written by the code before the subpackage layout, rebuilt from its skeleton.

tests/fixtures/pre_layout_mobilenet_v2_fcn8s.skeleton.pt is that checkpoint as the old code
wrote it (keys, hyper-parameters, loop, optimizer and scheduler state), with each large weight
tensor replaced by an empty one and its shape kept in `__filled__`: the repository need not
carry 9 MB of random weights. `rebuild_old_checkpoint` fills them with seeded values, the same
ones the old code was given when it computed the fixture's logits (tests/fixtures/README.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SKELETON = FIXTURES / "pre_layout_mobilenet_v2_fcn8s.skeleton.pt"


def fill(key: str, shape: list[int], index: int) -> torch.Tensor:
    """Seeded weights for one emptied tensor: small normal values, BN running variances in
    [0.5, 1.5) (they must be positive)."""
    generator = torch.Generator().manual_seed(1000 + index)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=generator)
    return 0.05 * torch.randn(shape, generator=generator)


def rebuild_old_checkpoint(path: Path) -> Path:
    """Write the pre-layout checkpoint, weights filled, to `path`; returns `path`."""
    ckpt = torch.load(SKELETON, weights_only=True)
    filled = ckpt.pop("__filled__")
    for index, (key, shape) in enumerate(sorted(filled.items())):
        ckpt["state_dict"][key] = fill(key, shape, index)
    torch.save(ckpt, path)
    return path
