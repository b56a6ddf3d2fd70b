"""fcn-export: torch.export (.pt2) and dynamo-ONNX exports match PyTorch at any size, carry
their metadata, load safely, and `verify_split` catches an export that changes the masks."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from helpers.trained import NUM_CLASSES, export_cfg, exported_model, verify_cfg

# The session's tiny checkpoint (tests/ is on sys.path under pytest).
import fcn.export
from fcn.core.errors import CheckpointError, ConfigError, FCNError
from fcn.deploy.exporters import capture_program, save_onnx
from fcn.deploy.model_files import load_model, rebuild_module
from fcn.deploy.model_info import ModelInfo, hyper_parameters_sha256
from fcn.deploy.parity import ExportError
from fcn.deploy.pt2_archive import check_pt2_archive
from fcn.deploy.runtimes import OnnxNetwork
from fcn.export import check_parity, export
from fcn.models import build_model

# The Show sizes: two off the 32 grid (one a portrait VOC image), one at 32 px (a 1 x 1
# stride-32 map, which needs capture_program's backed_size_oblivious).
SIZES = ([97, 131], [500, 375], [32, 96])


def random_head(backbone: str, head: str, std: float = 0.05) -> torch.nn.Module:
    """An FCN (5 classes) whose head weights are all random: a fresh head starts with zero
    skip scores and bilinear upsamplers, which would leave the 16s/8s skip paths untested."""
    torch.manual_seed(0)
    model = build_model(backbone, head, 5).eval()
    for p in model.head.parameters():
        p.data.normal_(0, std)
    return model


def check_every_size(model: torch.nn.Module, networks: dict, sizes=SIZES) -> None:
    generator = torch.Generator().manual_seed(1)
    for h, w in sizes:
        images = torch.randn(1 if h * w > 100_000 else 2, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = model(images)
        assert expected.abs().max() > 0.5, "logits too small for atol=1e-4 to mean much"
        # float32 rounding grows with the logits: 1e-4 of their scale (absolute below 1).
        tolerance = 1e-4 * max(1.0, float(expected.abs().max()))
        for name, network in networks.items():
            got = network(images)
            assert got.shape == expected.shape, (name, h, w)
            diff = float((got - expected).abs().max())
            assert diff <= tolerance, f"{name} {h}x{w}: |difference| {diff:.1e} > {tolerance:.1e}"


def export_and_compare(model: torch.nn.Module, folder: Path) -> None:
    """One torch.export per model, run as captured and converted to ONNX (saved, then run by
    ONNX Runtime) at the three sizes. (The .pt2 round trip: test_export_carries_metadata...)"""
    info = ModelInfo("x", "y", tuple(f"c{i}" for i in range(5)), ((0, 0, 0),) * 5)
    program = capture_program(model)
    onnx = folder / "m.onnx"
    save_onnx(program, onnx, info.to_metadata("onnx"), opset=18)
    networks = {"exported_program": program.module(), "onnx": load_model(onnx, "onnx").network}
    try:
        check_every_size(model, networks)
    finally:
        onnx.unlink()


@pytest.mark.parametrize("head", ["fcn32s", "fcn16s", "fcn8s"])
def test_resnet18_exports_match_pytorch_at_three_sizes(head, tmp_path):
    export_and_compare(random_head("resnet18", head), tmp_path)


@pytest.mark.slow  # VGG-16's fc6 alone is 102M parameters: ~540 MB per file, ~15 s per head
def test_vgg16_exports_match_pytorch_at_three_sizes(tmp_path):
    # The 540 MB files go to memory-backed /dev/shm where there is one (removed after each).
    # FCN-8s fuses both skips (pool3, pool4; FCN-16s fuses pool4 alone), FCN-32s neither.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if os.access(shm, os.W_OK) else tmp_path) as tmp:
        for head in ("fcn32s", "fcn8s"):
            # VGG's untrained features are small: larger head weights give logits of order 1.
            export_and_compare(random_head("vgg16", head, std=1.0), Path(tmp))


def test_capture_uses_backed_size_oblivious(monkeypatch):
    # capture_program relies on this private switch (see its docstring): without it the
    # graph guards that no feature map has a side of 1, and a 32 px input fails (the [32, 96]
    # size of the export tests above). Here: it exists and is on while torch.export runs.
    seen = []
    monkeypatch.setattr(
        torch.export,
        "export",
        lambda *a, **k: seen.append(torch.fx.experimental._config.backed_size_oblivious),
    )
    capture_program(torch.nn.Conv2d(3, 2, 1))
    assert seen == [True] and torch.fx.experimental._config.backed_size_oblivious is False


@pytest.mark.parametrize("fmt", ["exported_program", "onnx"])
def test_export_carries_metadata_checks_parity_and_verifies(fmt, ckpt, tiny_voc, tmp_path_factory):
    path, printed = exported_model(tmp_path_factory, ckpt, tiny_voc, fmt)
    lines = printed.splitlines()
    parity = [line.split(":")[0] for line in lines if line.startswith("parity")]
    assert parity == ["parity 97x131", "parity 64x64"]
    # verify_split=val passes: same masks (flip on) on the 4 val images, same mIoU.
    verify = next(line for line in lines if line.startswith("verify val"))
    assert "(4 images)" in verify and "|difference| 0.0e+00" in verify, verify
    assert " 0 of " in verify, verify
    assert lines[-1] == f"exported {fmt} to {path}"
    assert not list(path.parent.glob(f".{path.name}*"))  # no temporary left behind
    if fmt == "onnx":
        onnx = pytest.importorskip("onnx")
        proto = onnx.load(str(path))
        meta = {p.key: p.value for p in proto.metadata_props}
        dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in
                (proto.graph.input[0], proto.graph.output[0])]  # fmt: skip
        assert dims == [["batch", 3, "height", "width"], ["batch", NUM_CLASSES, "height", "width"]]
    else:
        meta = check_pt2_archive(path)  # the extra file fcn.json, read without loading
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert (
        meta["config_sha256"] == hyper_parameters_sha256(stored)
        and len(meta["config_sha256"]) == 64
    )
    assert meta["num_classes"] == "6" and '"triangle"' in meta["class_names"]
    assert json.loads(meta["palette"])[1] == [128, 0, 0] and meta["format"] == fmt
    assert (meta["backbone"], meta["head"]) == ("resnet18", "fcn8s")
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406]


def test_parity_check_fails_for_another_model(ckpt, tiny_voc, tmp_path_factory):
    path, _ = exported_model(tmp_path_factory, ckpt, tiny_voc, "onnx")
    model = rebuild_module(ckpt).model
    torch.manual_seed(1)
    for p in model.head.parameters():
        p.data.add_(torch.randn_like(p))
    assert max(check_parity(model, path, "onnx", [[65, 99]])) > 1e-2


def test_torchscript_still_exports_deprecated(ckpt, tmp_path, capsys):
    path = export(export_cfg(ckpt, tmp_path, "format=torchscript", "check_sizes=[[97,131]]"))
    assert path.suffix == ".pt" and "deprecated" in capsys.readouterr().out
    extra = {"fcn.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["fcn.json"])["head"] == "fcn8s"


def test_verify_split_fails_a_perturbed_export_with_both_numbers(
    ckpt, tiny_voc, tmp_path, monkeypatch
):
    # (A good export passes: test_export_carries_metadata_checks_parity_and_verifies.)
    real_write = fcn.export.write_export

    def perturbed_write(model, *args, **kwargs):
        # A deliberately wrong export: the class scores shifted, as a broken conversion would.
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.head.score32.bias.add_(torch.linspace(-2, 2, NUM_CLASSES))
        return real_write(model, *args, **kwargs)

    monkeypatch.setattr(fcn.export, "write_export", perturbed_write)
    with pytest.raises(ExportError) as failed:
        cfg = verify_cfg(ckpt, tiny_voc, tmp_path, "format=exported_program", "check_sizes=[]")
        export(cfg)
    message = str(failed.value)
    assert isinstance(failed.value, FCNError)  # so the CLI prints one line and exits 2
    assert "PyTorch mIoU=" in message and "exported_program mIoU=" in message
    assert "mask pixels differ" in message and "verify_pixel_tolerance" in message
    reference, exported = (float(v) for v in re.findall(r"mIoU=([0-9.]+)", message))
    assert reference != exported


def test_pt2_archives_that_would_run_code_are_refused(ckpt, tiny_voc, tmp_path_factory, tmp_path):
    good, _ = exported_model(tmp_path_factory, ckpt, tiny_voc, "exported_program")
    assert check_pt2_archive(good)["head"] == "fcn8s"

    def rewrite(name: str, change) -> Path:
        out = tmp_path / name
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                for new_name, new_data in change(item.filename, data):
                    dst.writestr(new_name, new_data)
        return out

    def pickled_weight(name, data):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            data = json.dumps(config).encode()
        yield name, data

    def with_library(name, data):
        yield name, data
        if name.endswith("models/model.json"):
            yield name.replace("models/model.json", "data/aotinductor/model/x.so"), b"\x7fELF"

    for bad, reason in [
        (rewrite("pickled.pt2", pickled_weight), "stored pickled"),
        (rewrite("library.pt2", with_library), "data/aotinductor/model/x.so, which loading"),
    ]:
        with pytest.raises(CheckpointError, match=reason):
            load_model(bad, "exported_program")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable .pt2 archive"):
        load_model(junk)
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        OnnxNetwork(shutil.copy(junk, tmp_path / "junk.onnx"), torch.device("cpu"))


def test_bad_export_requests(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="format='tflite' is not one of exported_program, onnx"):
        export(export_cfg(ckpt, tmp_path, "format=tflite"))
    with pytest.raises(CheckpointError, match="no such file"):
        export(export_cfg(tmp_path / "none.ckpt", tmp_path))
    with pytest.raises(ConfigError, match="verify_split works for format=exported_program or"):
        export(export_cfg(ckpt, tmp_path, "format=torchscript", "verify_split=val"))
    existing = tmp_path / "keep.pt2"
    existing.write_bytes(b"keep")
    with pytest.raises(ConfigError, match="already exists"):
        export(export_cfg(ckpt, tmp_path, "format=exported_program", f"output={existing}"))
    assert existing.read_bytes() == b"keep"
