"""fcn-export: ONNX (checked with onnxruntime) and TorchScript match PyTorch at two sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

# The session's tiny checkpoint (tests/ is on sys.path under pytest).
from test_evaluate import CONF, trained_checkpoint

from fcn.errors import CheckpointError, ConfigError
from fcn.export import check_parity, export
from fcn.inference import load_segmentation_module


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_voc) -> Path:
    return trained_checkpoint(tmp_path_factory, tiny_voc)


def export_cfg(ckpt: Path, out: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("export", [f"ckpt_path={ckpt}", f"paths.output_dir={out}", *overrides])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_at_two_sizes(fmt, ckpt, tmp_path, capsys):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    path = export(export_cfg(ckpt, tmp_path, f"format={fmt}"))
    assert path == tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    assert capsys.readouterr().out.count("parity") == 2
    model = load_segmentation_module(ckpt).model
    # Sizes other than the ones export checked, one not a multiple of 32, batch of 2.
    diffs = check_parity(model, path, fmt, [[65, 99], [128, 96]], seed=1)
    assert max(diffs) <= 1e-4
    # The parity check can fail: a different model's logits are far off.
    torch.manual_seed(1)
    for p in model.head.parameters():
        p.data.add_(torch.randn_like(p))
    assert max(check_parity(model, path, fmt, [[65, 99]])) > 1e-2


def test_onnx_carries_class_names(ckpt, tmp_path):
    onnx = pytest.importorskip("onnx")
    path = export(export_cfg(ckpt, tmp_path, "format=onnx", "check_sizes=[]"))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["num_classes"] == "6" and '"triangle"' in meta["class_names"]


def test_bad_export_requests(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="format='tflite' is not one of exported_program, onnx, torchscript"):
        export(export_cfg(ckpt, tmp_path, "format=tflite"))
    with pytest.raises(CheckpointError, match="no such file"):
        export(export_cfg(tmp_path / "none.ckpt", tmp_path))
    existing = tmp_path / "keep.pt"
    existing.write_bytes(b"keep")
    with pytest.raises(ConfigError, match="already exists"):
        export(export_cfg(ckpt, tmp_path, "format=torchscript", f"output={existing}"))
    assert existing.read_bytes() == b"keep"
