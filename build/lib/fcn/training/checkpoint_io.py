"""Where training's checkpoints are found (`ckpt_path=` / `resume=`) and how they are written:
a checkpoint file is only ever complete or absent. Reading them is fcn/deploy/model_files.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from fcn.core.atomic import atomic_file, remove_stale_temps
from fcn.core.errors import CheckpointError


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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a hidden file beside its target, flushed to disk, then renamed
    over the target (fcn/core/atomic.py): a checkpoint file is only ever complete or absent,
    also when the process is killed (SIGKILL, OOM killer) while writing.

    Lightning's own save commits through an fsspec transaction whose temporary file lives in the
    system temp directory; where that is another filesystem than the run directory (a tmpfs /tmp,
    runs on NFS or Lustre) the commit is a copy into the final name, and a kill during that copy
    leaves a truncated checkpoint. Remote (fsspec URL) paths keep Lightning's way.

    A killed writer leaves its hidden temp file behind; the first save into a directory removes
    those whose writer is gone (a best checkpoint's name changes with its score, so the next
    save of the same name need not come).
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
        if target.parent not in self._swept:
            remove_stale_temps(target.parent)
            self._swept.add(target.parent)
        with atomic_file(target, durable=True) as tmp:
            torch.save(checkpoint, tmp)
