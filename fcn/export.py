"""`python -m fcn.export ckpt_path=FILE [format=exported_program|onnx|torchscript] [output=FILE]
[verify_split=val data=voc data.root=DIR]`.

The export maps `N x 3 x H x W` ImageNet-normalised float images to `N x C x H x W` logits
for any H, W (batch, height and width are dynamic) and carries the model's metadata
(fcn.deploy.model_info). After writing it, its logits are compared with PyTorch's at `check_sizes`;
with `verify_split`, both models also predict every image of that split with the `eval`
options and the export fails (exit 2, both numbers shown) when mIoU or the masks differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from fcn.cli.entry import hydra_entry
from fcn.core.errors import ConfigError
from fcn.deploy.exporters import FORMATS, write_export
from fcn.deploy.model_data import data_for_model
from fcn.deploy.model_files import load_model, rebuild_module
from fcn.deploy.model_info import ModelInfo
from fcn.deploy.parity import ExportError, check_comparison, compare_on_split
from fcn.deploy.runtimes import load_torchscript
from fcn.models.inference import InferenceOptions

__all__ = ["ExportError", "check_parity", "export", "load_exported"]


def load_exported(path: Path, fmt: str) -> nn.Module:
    """The network in a file this export has just written, on the CPU."""
    if fmt == "torchscript":
        return load_torchscript(path)
    return load_model(path, backend=fmt).network


def check_parity(
    model: nn.Module, path: Path, fmt: str, sizes: Sequence[Sequence[int]], seed: int = 0
) -> list[float]:
    """Max abs logit difference between PyTorch and the export, one per `[H, W]` in sizes
    (a batch of 2 random images each)."""
    model = model.eval().cpu()
    exported = load_exported(path, fmt)
    generator = torch.Generator().manual_seed(seed)
    diffs = []
    for h, w in sizes:
        images = torch.randn(2, 3, int(h), int(w), generator=generator)
        with torch.no_grad():
            expected = model(images)
            got = exported(images)
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
        raise ConfigError(
            f"format={fmt!r} is not one of {', '.join(FORMATS)}: e.g. format=exported_program"
        )
    sizes = [list(s) for s in cfg.get("check_sizes") or []]
    if any(len(s) != 2 or min(s) < 32 for s in sizes):
        raise ConfigError(f"check_sizes must be [height, width] pairs >= 32, got {sizes}")
    split = cfg.get("verify_split")
    if split and fmt == "torchscript":
        raise ConfigError("verify_split works for format=exported_program or onnx, not torchscript")
    options = InferenceOptions.from_config(cfg.get("eval"), key="eval")
    module = rebuild_module(cfg.get("ckpt_path"), allow_modules=cfg.get("allow_modules"))
    default = Path(cfg.paths.output_dir) / f"model{FORMATS[fmt]}"
    path = Path(cfg.get("output") or default).expanduser()
    if path.exists() and not cfg.get("overwrite", False):
        raise ConfigError(f"output={path} already exists: choose another output or overwrite=true")
    path.parent.mkdir(parents=True, exist_ok=True)

    info = ModelInfo.from_module(module, module.checkpoint_hyper_parameters)
    write_export(module.model, fmt, path, info.to_metadata(fmt), opset=int(cfg.get("opset", 18)))
    if fmt == "torchscript":
        print("note: format=torchscript is deprecated (as torch.jit is): prefer exported_program")
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
    if split:
        verify_on_split(cfg, module.model, info, path, fmt, str(split), options)
    print(f"exported {fmt} to {path}")
    return path


def verify_on_split(
    cfg: DictConfig,
    model: nn.Module,
    info: ModelInfo,
    path: Path,
    fmt: str,
    split: str,
    options: InferenceOptions,
) -> None:
    """Both models over every image of `split` of `cfg.data`; ExportError past the tolerances."""
    datamodule = data_for_model(cfg.data, info, f"{cfg.ckpt_path}", split)
    datamodule.prepare_data()
    datamodule.setup("test")
    result = compare_on_split(
        model.eval().cpu(),
        load_exported(path, fmt),
        datamodule.test_dataset,
        datamodule.num_classes,
        options,
        split,
        num_workers=datamodule.num_workers,
    )
    print(result.summary(fmt))
    check_comparison(
        result,
        fmt,
        miou_tolerance=float(cfg.get("verify_miou_tolerance", 1e-4)),
        pixel_tolerance=float(cfg.get("verify_pixel_tolerance", 1e-4)),
    )


@hydra_entry("export")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
