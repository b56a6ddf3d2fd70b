"""Checkpoints: found, read safely and checked before they reach Lightning (mistakes read as one
line), and written so that a file is only ever complete or absent.

Reading never runs code: every checkpoint is read with `weights_only=True` (here, and Lightning's
own resume through `trainer.fit(..., weights_only=True)`). fcn's checkpoints hold only tensors,
numbers, strings, lists and dicts (hyper-parameters are plain containers, the schedulers are
LambdaLRs whose lambdas Lightning stores as None), so no extra type is allowed with
`torch.serialization.add_safe_globals`.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
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


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; anything else than tensors and plain
    data is refused (nothing in the file runs) with one line naming `key` and the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}={path}: no such file; pass an existing .ckpt path")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{key}={path}: not a readable checkpoint: refused to load {_unsafe_content(path)} "
            "(nothing in it was run); it may be unsafe or not an fcn checkpoint: pass a "
            "checkpoint written by fcn-train"
        ) from None
    except Exception as err:  # truncated, not a torch file, unreadable
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{key}={path}: not a readable checkpoint ({reason})") from None


def _unsafe_content(path: Path) -> str:
    """What `weights_only` refused, as named by torch's scan of the pickle (no code is run)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not torch.save's zip format: torch cannot list it
        names = []
    if names:
        return "objects of " + ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    return "data other than tensors and plain values"


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """Load a Lightning checkpoint safely on the CPU, with one clear error if it is not one."""
    ckpt = read_checkpoint(path, key)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{key}={path}: not a Lightning checkpoint (no state_dict)")
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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a hidden file beside its target, then renames it over the target
    (`os.replace`, atomic within a filesystem): a checkpoint file is only ever complete or absent,
    also when the process is killed (SIGKILL, OOM killer) while writing.

    Lightning's own save commits through an fsspec transaction whose temporary file lives in the
    system temp directory; where that is another filesystem than the run directory (a tmpfs /tmp,
    runs on NFS or Lustre) the commit is a copy into the final name, and a kill during that copy
    leaves a truncated checkpoint. Remote (fsspec URL) paths keep Lightning's way.

    A killed writer leaves its hidden `.partial` file behind; the first save into a directory
    removes those (a best checkpoint's name changes with its score, so the next save of the same
    name need not come).
    """

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        fs, local = fsspec.core.url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent not in self._swept:
            for leftover in target.parent.glob(".*.partial"):
                leftover.unlink(missing_ok=True)
            self._swept.add(target.parent)
        # One fixed name per target: a file left by a killed writer is overwritten next time.
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
