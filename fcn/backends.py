"""The network behind fcn-predict, fcn-eval, fcn-export's checks and `load_segmenter`.

Each backend is an `nn.Module` mapping `N x 3 x H x W` normalised images to `N x C x H x W`
logits, so `fcn.inference.predict_logits` (whole/slide, flip, scales) runs around any of them:

  torch             a checkpoint written by fcn-train (.ckpt), rebuilt in PyTorch
  onnx              an ONNX file written by fcn-export (.onnx), run by ONNX Runtime
  exported_program  a torch.export program written by fcn-export (.pt2)

Every file is read without running code from it: checkpoints with `weights_only=True`
(fcn.checkpoints), ONNX as a protobuf, and `.pt2` archives only after checking they hold
nothing `torch.export.load` would unpickle or execute (`check_pt2_archive`).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fcn.errors import CheckpointError, ConfigError
from fcn.modelinfo import METADATA_FILE, ModelInfo

BACKENDS = {"torch": ".ckpt", "onnx": ".onnx", "exported_program": ".pt2"}


@dataclass
class LoadedModel:
    """A backend's network (eval mode, on its device) and the facts its file carries."""

    network: nn.Module
    info: ModelInfo
    backend: str
    path: Path


def backend_for(path: str | Path) -> str:
    """The backend that runs `path`, from its suffix."""
    suffix = Path(path).suffix.lower()
    for name, known in BACKENDS.items():
        if suffix == known:
            return name
    raise ConfigError(
        f"model={path}: cannot tell its backend from the suffix {suffix!r}; pass a .ckpt, "
        ".onnx or .pt2 file, or name the backend (backend=torch|onnx|exported_program)"
    )


def configured_model(cfg: Mapping[str, Any]) -> tuple[str | None, str, str]:
    """(file, backend, its config key) from a CLI config: `model` (any backend) or
    `ckpt_path` (the older spelling, torch only)."""
    backend = str(cfg.get("backend") or "torch")
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    model, ckpt = cfg.get("model"), cfg.get("ckpt_path")
    if model and ckpt:
        raise ConfigError("set either model or ckpt_path, not both (model= takes any backend)")
    if ckpt and backend != "torch":
        raise ConfigError(f"backend={backend} runs model=<{BACKENDS[backend]} file>, not ckpt_path")
    return (model or ckpt), backend, ("ckpt_path" if ckpt else "model")


def load_model(
    path: str | Path | None,
    backend: str | None = None,
    device: str | torch.device = "cpu",
    key: str = "model",
) -> LoadedModel:
    """Load `path` with `backend` (None: from the suffix) for inference on `device`; errors
    name the file as `key=<path>`."""
    if path is None or str(path) in ("", "None", "null"):
        raise ConfigError(f"{key} is not set: pass model=<.ckpt, .onnx or .pt2 file>")
    path = Path(path).expanduser()
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if not path.is_file():
        suffix = BACKENDS[backend]
        raise CheckpointError(f"{key}={path}: no such file; pass an existing {suffix} path")
    if path.suffix.lower() != BACKENDS[backend] and path.suffix.lower() in BACKENDS.values():
        raise ConfigError(
            f"{key}={path} is a {backend_for(path)} file but backend={backend}: pass "
            f"backend={backend_for(path)}, or a {BACKENDS[backend]} file (fcn-export writes them)"
        )
    device = torch.device(device)
    if backend == "torch":
        from fcn.inference import load_segmentation_module

        module = load_segmentation_module(path)
        info = ModelInfo.from_module(module, module.checkpoint_hyper_parameters)
        network: nn.Module = module.model
    elif backend == "onnx":
        network = OnnxNetwork(path, device)
        info = ModelInfo.from_metadata(network.metadata, str(path))
    else:
        network, meta = _load_exported_program(path)
        info = ModelInfo.from_metadata(meta, str(path))
    return LoadedModel(network.to(device).eval(), info, backend, path)


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session as a module: torch tensors in, torch tensors out."""

    def __init__(self, path: Path, device: torch.device) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(
                "backend=onnx needs onnxruntime: pip install onnxruntime (or the package's "
                "[export] extra)"
            ) from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"model={path}: not a readable ONNX model ({first})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, images: Tensor) -> Tensor:
        array = images.detach().float().contiguous().cpu().numpy()
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(np.asarray(logits)).to(images.device)


class ExportedProgramNetwork(nn.Module):
    """A `torch.export` program's module. It was captured in eval mode and has no train mode
    (its `.train()` / `.eval()` raise), so switching modes stops here."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> ExportedProgramNetwork:
        self.training = mode
        return self

    def forward(self, images: Tensor) -> Tensor:
        return self.program(images)


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


def _load_exported_program(path: Path) -> tuple[nn.Module, dict[str, str]]:
    meta = check_pt2_archive(path)
    try:
        program = torch.export.load(str(path))
    except Exception as err:
        raise CheckpointError(f"model={path}: torch.export.load failed ({err})") from None
    return ExportedProgramNetwork(program.module()), meta
