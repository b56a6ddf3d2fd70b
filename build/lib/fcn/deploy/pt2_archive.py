"""The safety scan of a `.pt2` archive (torch.export) before `torch.export.load` reads it.

`torch.export.load` unpickles some records and can load compiled libraries; fcn-export writes
none of those. A `.pt2` is accepted only when it holds graphs, raw tensors and metadata, so
loading it runs nothing from the file.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch

from fcn.core.errors import CheckpointError
from fcn.deploy.model_info import METADATA_FILE

# Records of a .pt2 beside the ones _allowed_pt2_record accepts by folder.
_PT2_BOOKKEEPING = {"archive_format", "archive_version", "byteorder", "version"}


def check_pt2_archive(path: Path) -> dict[str, str]:
    """Refuse a .pt2 that `torch.export.load` would unpickle or execute anything from (pickled
    weights, custom or opaque objects, AOTInductor libraries); return its fcn metadata."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = {_record_name(n): n for n in archive.namelist() if not n.endswith("/")}
            if "models/model.json" not in records:
                raise CheckpointError(
                    f"model={path}: not a torch.export archive with one program (no "
                    "models/model.json); pass a .pt2 written by fcn-export"
                )
            for name in records:
                if not _allowed_pt2_record(name):
                    raise CheckpointError(
                        f"model={path}: holds {name}, which loading would unpickle or run; only "
                        "graphs, raw tensors and metadata are accepted: re-export with fcn-export"
                    )
            for config in ("data/weights/model_weights_config.json",
                           "data/constants/model_constants_config.json"):  # fmt: skip
                entries = json.loads(archive.read(records[config])).get("config", {})
                pickled = [k for k, v in entries.items() if v.get("use_pickle")]
                if pickled:
                    raise CheckpointError(
                        f"model={path}: {pickled[0]} is stored pickled, which loading would run; "
                        "re-export with fcn-export"
                    )
            sample = records.get("data/sample_inputs/model.pt")
            if sample is not None and not _plain_tensors(archive.read(sample)):
                # torch.export.load would retry it with full unpickling (code could run)
                raise CheckpointError(
                    f"model={path}: its sample inputs are not plain tensors; re-export with "
                    "fcn-export"
                )
            meta_name = records.get(f"extra/{METADATA_FILE}")
            return json.loads(archive.read(meta_name)) if meta_name else {}
    except CheckpointError:
        raise
    except Exception as err:  # not a zip, truncated, a config that is not JSON, ...
        raise CheckpointError(f"model={path}: not a readable .pt2 archive ({err})") from None


def _plain_tensors(payload: bytes) -> bool:
    if not payload:
        return True
    try:
        torch.load(io.BytesIO(payload), weights_only=True)
    except Exception:
        return False
    return True


def _record_name(name: str) -> str:
    """`<archive folder>/models/model.json` -> `models/model.json`."""
    return name.split("/", 1)[1] if "/" in name else name


def _allowed_pt2_record(name: str) -> bool:
    if name in _PT2_BOOKKEEPING or name.startswith(".data/"):
        return True
    if name in ("models/model.json", "data/sample_inputs/model.pt"):
        return True
    if name.startswith("extra/"):
        return True
    folder, _, file = name.rpartition("/")
    if folder == "data/weights":
        return file == "model_weights_config.json" or file.startswith("weight_")
    if folder == "data/constants":
        return file == "model_constants_config.json" or file.startswith("tensor_")
    return False
