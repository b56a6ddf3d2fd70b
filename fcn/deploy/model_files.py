"""Reading model files: the one place a checkpoint (.ckpt), ONNX file (.onnx) or torch.export
program (.pt2) becomes a network. fcn-train (resume, `init_from`), fcn-eval, fcn-predict,
fcn-export and `load_segmenter` all come through here.

Nothing from a file runs while it is read: checkpoints with `weights_only=True`
(fcn/core/torch_files.py), ONNX as a protobuf, `.pt2` archives only after the scan in
fcn/deploy/pt2_archive.py. fcn's checkpoints hold only tensors, numbers, strings, lists and
dicts (hyper-parameters are plain containers, the schedulers are LambdaLRs whose lambdas
Lightning stores as None), so no extra type is allowed with
`torch.serialization.add_safe_globals`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcn.core.errors import CheckpointError, ConfigError, FCNError
from fcn.core.torch_files import load_weights_only, state_dict_mismatch
from fcn.deploy.model_info import ModelInfo
from fcn.deploy.runtimes import OnnxNetwork, load_exported_program
from fcn.models import without_random_init
from fcn.models.custom import check_allowed

# backend name -> the suffix of the files it runs
BACKENDS = {"torch": ".ckpt", "onnx": ".onnx", "exported_program": ".pt2"}
CHECKPOINT = "a checkpoint written by fcn-train (<run>/checkpoints/*.ckpt)"


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
    allow_modules: Iterable[str] | None = None,
) -> LoadedModel:
    """Load `path` with `backend` (None: from the suffix) for inference on `device`; errors
    name the file as `key=<path>`. `allow_modules`: packages whose classes a checkpoint may
    name (fcn/models/custom.py)."""
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
        module = rebuild_module(path, key, allow_modules)
        info = ModelInfo.from_module(module, module.checkpoint_hyper_parameters)
        network: nn.Module = module.model
    elif backend == "onnx":
        network = OnnxNetwork(path, device)
        info = ModelInfo.from_metadata(network.metadata, str(path))
    else:
        network, meta = load_exported_program(path)
        info = ModelInfo.from_metadata(meta, str(path))
    return LoadedModel(network.to(device).eval(), info, backend, path)


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """A Lightning checkpoint read safely on the CPU, with one clear error if it is not one."""
    ckpt = load_weights_only(path, key, CHECKPOINT)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{key}={path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def _made_for(hp: Mapping[str, Any]) -> str:
    model = f"{hp.get('backbone', '?')}/{hp.get('head', '?')}"
    return f"a {model} FCN with {hp.get('num_classes', '?')} classes"


def check_checkpoint(path: str | Path, module: nn.Module, key: str = "ckpt_path") -> dict:
    """Load `path` and make sure its weights fit `module` (names and shapes) before Lightning
    resumes from it."""
    ckpt = load_checkpoint(path, key)
    mismatch = state_dict_mismatch(module.state_dict(), _model_state(ckpt))
    if mismatch:
        raise CheckpointError(
            f"{key}={path}: made for {_made_for(ckpt.get('hyper_parameters') or {})}, does not "
            f"match this model ({mismatch.summary()}); use the same backbone, head and "
            "num_classes"
        )
    return ckpt


def _model_state(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    # Early checkpoints also held `_forward.*`, a duplicate of `model.*`: not needed.
    return {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("_forward.")}


def rebuild_module(
    path: str | Path | None, key: str = "ckpt_path", allow_modules: Iterable[str] | None = None
):
    """The SegmentationModule stored in a checkpoint (no pretrained download, eval mode);
    `.checkpoint_hyper_parameters` holds the hyper-parameters as stored.

    A missing file, a non-checkpoint or a checkpoint of another model is one CheckpointError;
    so is one naming a class outside fcn/timm/torchvision and `allow_modules`.
    """
    # deferred: the LightningModule pulls in the optimisers and loggers
    from fcn.training.module import SegmentationModule

    if path is None or str(path) in ("", "None", "null"):
        raise CheckpointError(f"{key} is not set: pass {key}=<run>/checkpoints/<name>.ckpt")
    ckpt = load_checkpoint(path, key)
    stored = dict(ckpt.get("hyper_parameters") or {})
    if not {"backbone", "head", "num_classes"} <= stored.keys():
        raise CheckpointError(
            f"{key}={path}: not an fcn SegmentationModule checkpoint (no backbone/head/"
            f"num_classes hyper-parameters); pass {CHECKPOINT}"
        )
    for part in ("backbone", "head"):
        class_path = stored.get(f"{part}_target")
        check_allowed(class_path, allow_modules, f"{key}={path}: its {part}._target_")
    known = inspect.signature(SegmentationModule.__init__).parameters
    hp = {k: v for k, v in stored.items() if k in known}
    # No weight download or torch.compile at inference: the checkpoint holds every weight.
    hp.update(pretrained=False, weights_path=None, compile=False, channels_last=False)
    try:
        # Random weights are not drawn: the strict load below sets every one of them (the
        # model keeps no tensor outside its state dict; tests/test_models.py checks).
        with without_random_init():
            module = SegmentationModule(**hp)
    except FCNError as err:  # e.g. an unknown backbone name in the hyper-parameters
        raise CheckpointError(f"{key}={path}: cannot rebuild its model ({err})") from None
    state = _model_state(ckpt)
    mismatch = state_dict_mismatch(module.state_dict(), state)
    if mismatch:
        raise CheckpointError(
            f"{key}={path}: its weights do not fit {_made_for(hp)} ({mismatch.summary()}); "
            f"pass {CHECKPOINT}"
        )
    module.load_state_dict(state, strict=True)
    # As stored (before the inference overrides above): exports hash them (model_info).
    module.checkpoint_hyper_parameters = stored
    return module.eval()
