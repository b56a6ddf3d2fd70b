"""Reading a user's torch file without running code from it, and comparing state dicts.

Every `torch.load` of a file a user passes (checkpoints, backbone weights, `init_from`) goes
through `load_weights_only`: `weights_only=True`, so a file holding anything but tensors and
plain data is refused before any of it runs, as one line naming the config key and the file.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fcn.core.errors import CheckpointError


def load_weights_only(path: str | Path, key: str, expected: str) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU. `key` is the config key that named the
    file, `expected` what it should be ("a checkpoint written by fcn-train"); both go into the
    one-line error for a missing, unreadable or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}={path}: no such file; pass {expected}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{key}={path}: not a readable checkpoint: refused to load {_unsafe_content(path)} "
            f"(nothing in it was run); it may be unsafe or not an fcn checkpoint: pass {expected}"
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


def load_state_dict_file(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """The weights in a Lightning checkpoint or a bare state dict (`init_from=`), read safely."""
    stored = load_weights_only(path, key, "a .ckpt written by fcn-train")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{key}={path}: not a checkpoint or state dict")
    return stored.get("state_dict", stored)


@dataclass(frozen=True)
class StateDictMismatch:
    """How a stored state dict differs from a model's: names it lacks, names the model does not
    have, and names whose shapes differ."""

    missing: list[str]
    unexpected: list[str]
    misshaped: list[str]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    def summary(self) -> str:
        """`2 missing, 0 unexpected, 1 mis-shaped tensors, e.g. missing head.score.weight`."""
        kinds = (("missing", self.missing), ("unexpected", self.unexpected),
                 ("mis-shaped", self.misshaped))  # fmt: skip
        example = next(f"{kind} {names[0]}" for kind, names in kinds if names)
        counts = ", ".join(f"{len(names)} {kind}" for kind, names in kinds)
        return f"{counts} tensors, e.g. {example}"


def state_dict_mismatch(
    own: Mapping[str, torch.Tensor],
    stored: Mapping[str, Any],
    may_lack: tuple[str, ...] = (),
) -> StateDictMismatch:
    """Compare `stored` with a model's `own` state dict; names starting with a prefix in
    `may_lack` may be absent from `stored` (a features-only backbone dict)."""
    missing = [k for k in own if k not in stored and not k.startswith(may_lack or ("\0",))]
    unexpected = [k for k in stored if k not in own]
    misshaped = [
        k for k in own if k in stored and tuple(getattr(stored[k], "shape", ())) != own[k].shape
    ]
    return StateDictMismatch(missing, unexpected, misshaped)
