"""`python -m fcn.export ckpt_path=FILE format=onnx|torchscript [output=FILE]`.

The exported graph maps `N x 3 x H x W` ImageNet-normalised float images to `N x C x H x W`
logits for any H, W >= 32 (batch, height and width are dynamic). After writing it, the
export is run at two input sizes and compared with the PyTorch model (max abs logit
difference <= `tolerance`), with onnxruntime for ONNX.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from fcn.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fcn.errors import ConfigError, FCNError, exit_on_user_error
from fcn.inference import load_segmentation_module
from fcn.known_warnings import ignore_known_warnings
from fcn.resolvers import register_resolvers

# The config files use fcn's resolvers (sweep job names, --help); dependency warnings that a
# run cannot act on stay quiet (fcn/known_warnings.py).
register_resolvers()
ignore_known_warnings()

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportError(FCNError):
    """The exported model does not reproduce the PyTorch model."""


def export_model(
    model: nn.Module,
    fmt: str,
    path: Path,
    metadata: dict[str, str] | None = None,
    opset: int = 17,
    example_size: Sequence[int] = (64, 64),
) -> Path:
    """Write `model` (eval mode, CPU) as ONNX or TorchScript with dynamic N, H, W."""
    model = model.eval().cpu()
    example = torch.randn(1, 3, *example_size)
    metadata = metadata or {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the (size-agnostic) pad/crop
        if fmt == "torchscript":
            traced = torch.jit.trace(model, example, check_trace=False)  # see check_parity
            torch.jit.save(traced, str(path), _extra_files={"fcn.json": json.dumps(metadata)})
        elif fmt == "onnx":
            # The TorchScript-based exporter: FCN's forward takes its always-pad path under
            # tracing, so the padding amount stays symbolic in H and W.
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": axes, "logits": axes},
                opset_version=opset,
            )
            _add_onnx_metadata(path, metadata)
        else:
            raise ConfigError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    return path


def _add_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def run_exported(path: Path, fmt: str, images: torch.Tensor) -> torch.Tensor:
    """Logits of the exported model at `path` (onnxruntime on CPU for ONNX)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(["logits"], {"images": images.numpy()})
        return torch.from_numpy(np.asarray(out))
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(images)


def check_parity(
    model: nn.Module, path: Path, fmt: str, sizes: Sequence[Sequence[int]], seed: int = 0
) -> list[float]:
    """Max abs logit difference between PyTorch and the export, one per `[H, W]` in sizes."""
    model = model.eval().cpu()
    generator = torch.Generator().manual_seed(seed)
    diffs = []
    for h, w in sizes:
        images = torch.randn(2, 3, int(h), int(w), generator=generator)
        with torch.no_grad():
            expected = model(images)
        got = run_exported(path, fmt, images)
        if got.shape != expected.shape:
            raise ExportError(
                f"{path}: exported model gave {tuple(got.shape)} at input {h}x{w}, "
                f"PyTorch {tuple(expected.shape)}"
            )
        diffs.append(float((got - expected).abs().max()))
    return diffs


def export(cfg: DictConfig) -> Path:
    """Export `cfg.ckpt_path` as `cfg.format`; returns the written file."""
    fmt = str(cfg.get("format"))
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is not one of {', '.join(FORMATS)}: e.g. format=onnx")
    sizes = [list(s) for s in cfg.get("check_sizes") or []]
    if any(len(s) != 2 or min(s) < 32 for s in sizes):
        raise ConfigError(f"check_sizes must be [height, width] pairs >= 32, got {sizes}")
    module = load_segmentation_module(cfg.get("ckpt_path"))
    default = Path(cfg.paths.output_dir) / f"model{FORMATS[fmt]}"
    path = Path(cfg.get("output") or default).expanduser()
    if path.exists() and not cfg.get("overwrite", False):
        raise ConfigError(f"output={path} already exists: choose another output or overwrite=true")
    path.parent.mkdir(parents=True, exist_ok=True)

    metadata = {
        "backbone": str(module.hparams.backbone),
        "head": str(module.hparams.head),
        "num_classes": str(module.hparams.num_classes),
        "class_names": json.dumps(list(module.class_names)),
        "input": "images: N x 3 x H x W float32, RGB / 255, normalised by mean and std, H, W >= 32",
        "mean": json.dumps(IMAGENET_MEAN),
        "std": json.dumps(IMAGENET_STD),
        "output": "logits: N x num_classes x H x W",
    }
    export_model(module.model, fmt, path, metadata, opset=int(cfg.get("opset", 17)))
    tolerance = float(cfg.get("tolerance", 1e-4))
    diffs = check_parity(module.model, path, fmt, sizes)
    for (h, w), diff in zip(sizes, diffs, strict=True):
        print(f"parity {h}x{w}: max |logit difference| = {diff:.2e} (tolerance {tolerance:.0e})")
    bad = [(s, d) for s, d in zip(sizes, diffs, strict=True) if not d <= tolerance]
    if bad:
        (h, w), diff = bad[0]
        raise ExportError(
            f"{path}: exported {fmt} model differs from PyTorch by {diff:.2e} at {h}x{w} "
            f"(> tolerance={tolerance}); the file is kept for inspection"
        )
    print(f"exported {fmt} to {path}")
    return path


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    # Bad input (checkpoint, format, output) is one line on stderr and exit status 2.
    with exit_on_user_error():
        export(cfg)


if __name__ == "__main__":
    main()
