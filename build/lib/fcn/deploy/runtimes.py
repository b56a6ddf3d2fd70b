"""Exported networks as `nn.Module`s: an ONNX Runtime session and a `torch.export` program
(torch tensors in, torch tensors out), so the test-time options run around them as around a
PyTorch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fcn.core.errors import CheckpointError, ConfigError
from fcn.deploy.pt2_archive import check_pt2_archive


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


def load_exported_program(path: Path) -> tuple[nn.Module, dict[str, str]]:
    """A `.pt2` written by fcn-export, after its safety scan, and the metadata it carries."""
    meta = check_pt2_archive(path)
    try:
        program = torch.export.load(str(path))
    except Exception as err:
        raise CheckpointError(f"model={path}: torch.export.load failed ({err})") from None
    return ExportedProgramNetwork(program.module()), meta


def load_torchscript(path: Path) -> nn.Module:
    """A TorchScript file, on the CPU. TorchScript has no weights-only mode: fcn loads only the
    file fcn-export has just written (its parity check), never a user's."""
    return torch.jit.load(str(path), map_location="cpu").eval()
