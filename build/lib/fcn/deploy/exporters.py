"""Writing an FCN as a deployable file: a torch.export program (.pt2), ONNX, or TorchScript.

All three take `N x 3 x H x W` normalised images with batch, height and width dynamic and
give `N x C x H x W` logits. ONNX is converted from the same torch.export program (the
dynamo-based exporter), so the two modern formats share one graph. Files are written next to
their destination and renamed into place: an interrupted export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from fcn.core.atomic import atomic_file
from fcn.core.errors import ConfigError
from fcn.deploy.model_info import METADATA_FILE

# fcn-export's formats and the suffix of the file each writes.
FORMATS = {"exported_program": ".pt2", "onnx": ".onnx", "torchscript": ".pt"}
# An example input for capture: batch 2 (a batch of 1 would be specialised to 1), any size.
EXAMPLE_SHAPE = (2, 3, 64, 64)


def capture_program(model: nn.Module) -> torch.export.ExportedProgram:
    """`torch.export` of the eval-mode CPU model with dynamic batch, height and width.

    Uses torch.fx.experimental._config.backed_size_oblivious, the switch the torch.export
    tutorial names for "avoiding 0/1 specialization" (private: no public one exists in torch
    2.14): without it, every feature map's contiguity check guards that its side is not 1, so
    the graph refuses inputs whose side is 32 or less (a 1 x 1 stride-32 map).
    tests/test_export.py::test_capture_uses_backed_size_oblivious pins it.
    """
    model = model.eval().cpu()
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    with torch.fx.experimental._config.patch(backed_size_oblivious=True), torch.no_grad():
        return torch.export.export(
            model, (torch.randn(*EXAMPLE_SHAPE),), dynamic_shapes={"x": dims}
        )


def write_export(
    model: nn.Module, fmt: str, path: Path, metadata: dict[str, str], opset: int = 18
) -> Path:
    """Write `model` as `fmt` (one of FORMATS) to `path`, carrying `metadata`."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    writers: dict[str, Callable[[Path], None]] = {
        "exported_program": lambda tmp: save_program(capture_program(model), tmp, metadata),
        "onnx": lambda tmp: save_onnx(capture_program(model), tmp, metadata, opset),
        "torchscript": lambda tmp: save_torchscript(model, tmp, metadata),
    }
    with atomic_file(path, keep_suffix=True) as tmp:
        writers[fmt](tmp)
    return path


def save_program(program: torch.export.ExportedProgram, path, metadata: dict[str, str]) -> None:
    """torch.export.save with the metadata as the extra file `fcn.json` (path or buffer)."""
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(metadata)})


def onnx_program(program: torch.export.ExportedProgram, metadata: dict[str, str], opset: int):
    """The dynamo exporter's ONNXProgram for `program`: input `images` [batch, 3, height,
    width], output `logits` [batch, C, height, width], `metadata` as metadata_props."""
    try:
        import onnx_ir as ir
        import onnxscript  # noqa: F401  (the exporter's dependency: fail here, with the fix)
    except ImportError as err:
        raise ConfigError(
            f"format=onnx needs onnx and onnxscript ({err}): pip install onnx onnxscript "
            "onnxruntime (the package's [export] extra)"
        ) from None

    with warnings.catch_warnings(), _quiet_loggers("onnx_ir", "onnxscript", "torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's notes on opset conversion etc.
        onnx = torch.onnx.export(
            program,
            input_names=["images"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    graph = onnx.model.graph
    dims = graph.inputs[0].shape
    # The exporter names dims after torch's symbols (s77, ...) and writes the output's as the
    # pad-and-crop arithmetic; both come out as the plain names of the contract.
    onnx.rename_axes({dims[0].value: "batch", dims[2].value: "height", dims[3].value: "width"})
    num_classes = graph.outputs[0].shape[1]
    graph.outputs[0].shape = ir.Shape(["batch", num_classes, "height", "width"])
    onnx.model.metadata_props.update(metadata)
    return onnx


def save_onnx(
    program: torch.export.ExportedProgram, path: Path, metadata: dict[str, str], opset: int
) -> None:
    # One self-contained file (protobuf's 2 GB limit is far above every FCN here).
    onnx_program(program, metadata, opset).save(str(path), external_data=False)


def save_torchscript(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Deprecated format (torch.jit is): traced, metadata in `_extra_files`."""
    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings
        # FCN's forward takes its always-pad path under tracing, so no size is frozen in.
        traced = torch.jit.trace(model, torch.randn(*EXAMPLE_SHAPE), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """INFO notes of the ONNX passes (e.g. "Replaced initializer ...") off while converting:
    under Hydra's logging they would land among fcn-export's own lines."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
