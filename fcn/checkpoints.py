"""Finding and checking checkpoints before they reach Lightning, so mistakes read as one line."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fcn.errors import CheckpointError


def resolve_resume(ckpt_path: str | None, resume: str | None) -> str | None:
    """The checkpoint to resume from: `ckpt_path`, or `<resume run dir>/checkpoints/last.ckpt`."""
    if ckpt_path and resume:
        raise CheckpointError("set either ckpt_path or resume, not both")
    if resume:
        path = Path(resume) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(
                f"resume={resume}: no checkpoints/last.ckpt in that run directory; "
                "pass ckpt_path=<file> instead"
            )
        return str(path)
    if ckpt_path and not Path(ckpt_path).is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path}: no such file; pass an existing .ckpt path")
    return ckpt_path or None


def load_checkpoint(path: str | Path) -> dict:
    """Load a Lightning checkpoint on the CPU, with one clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file; pass an existing .ckpt path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"ckpt_path={path}: not a readable checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"ckpt_path={path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def check_checkpoint(path: str | Path, model: nn.Module) -> dict:
    """Load `path` and make sure its weights fit `model` (names and shapes)."""
    ckpt = load_checkpoint(path)
    own = model.state_dict()
    theirs = ckpt["state_dict"]
    missing = [k for k in own if k not in theirs]
    wrong = [k for k in own if k in theirs and theirs[k].shape != own[k].shape]
    # e.g. a ResNet-34 checkpoint holds every ResNet-18 name plus blocks of its own
    extra = [k for k in theirs if k not in own]
    if missing or wrong or extra:
        hp = ckpt.get("hyper_parameters", {})
        made = f"{hp.get('backbone', '?')}/{hp.get('head', '?')} with {hp.get('num_classes', '?')}"
        first = (missing or wrong or extra)[0]
        raise CheckpointError(
            f"ckpt_path={path}: made for {made} classes, does not match this model "
            f"({len(missing)} missing, {len(wrong)} mis-shaped, {len(extra)} unexpected tensors, "
            f"e.g. {first}); "
            "use the same backbone, head and num_classes"
        )
    return ckpt
