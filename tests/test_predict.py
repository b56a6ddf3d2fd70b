"""fcn-predict: masks at the input's exact size, palette PNGs, overlays, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.trained import REPO, exported_model, predict_cfg
from PIL import Image

# The session's tiny checkpoint and config helpers (tests/ is on sys.path under pytest).
from fcn.core.classes import voc_palette
from fcn.core.errors import CheckpointError, ConfigError, DataError
from fcn.deploy.image_files import overlay
from fcn.deploy.prediction_lanes import (
    batch_size_for,
    decoding_workers,
    intra_op_threads,
    prediction_lanes,
)
from fcn.predict import predict, same_size_batches


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_masks_and_overlays_have_the_input_size(ckpt, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "odd.jpg", 97, 131)
    write_image(inputs / "tall.png", 131, 97, seed=1)
    write_image(inputs / "small.bmp", 20, 45, seed=2)  # under the FCN's 32 px: padded inside
    (inputs / "notes.txt").write_text("not an image, not picked up from a folder")
    out = tmp_path / "out"
    written = predict(predict_cfg(ckpt, inputs, out))
    assert sorted(p.name for p in written) == ["odd.png", "small.png", "tall.png"]
    for stem, (h, w) in {"odd": (97, 131), "tall": (131, 97), "small": (20, 45)}.items():
        mask = Image.open(out / f"{stem}.png")
        assert mask.mode == "P" and mask.size == (w, h)
        assert mask.getpalette()[: 3 * 21] == voc_palette()[: 3 * 21]
        assert int(np.asarray(mask).max()) < 6
        assert Image.open(out / f"{stem}_overlay.jpg").size == (w, h)


def test_flip_and_slide_options_apply(ckpt, tmp_path):
    image = write_image(tmp_path / "one.jpg", 97, 131)
    whole = predict(predict_cfg(ckpt, image, tmp_path / "whole"))[0]
    slide = predict(
        predict_cfg(ckpt, image, tmp_path / "slide", "eval.mode=slide", "eval.window=[128,256]")
    )[0]
    # One window covering the image is the whole image.
    assert np.array_equal(np.asarray(Image.open(slide)), np.asarray(Image.open(whole)))
    flipped = predict(
        predict_cfg(ckpt, image, tmp_path / "flip", "eval.flip=true", "eval.window=[64,64]")
    )[0]
    assert np.asarray(Image.open(flipped)).shape == (97, 131)


def test_existing_outputs_are_never_overwritten_silently(ckpt, tmp_path):
    image = write_image(tmp_path / "a.jpg", 64, 64)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    with pytest.raises(ConfigError, match=r"already holds a\.png: .*overwrite=true"):
        predict(predict_cfg(ckpt, image, tmp_path / "run", f"output_dir={out}"))
    assert (out / "a.png").read_bytes() == b"precious"
    assert not (out / "a_overlay.jpg").exists()
    predict(predict_cfg(ckpt, image, tmp_path / "run", f"output_dir={out}", "overwrite=true"))
    assert Image.open(out / "a.png").size == (64, 64)


def test_bad_inputs_stop_before_anything_is_written(ckpt, tmp_path):
    out = tmp_path / "out"

    def run(input_path, *overrides, ckpt_path=ckpt):
        return predict(predict_cfg(ckpt_path, input_path, out, *overrides))

    with pytest.raises(DataError, match="no such file or folder"):
        run(tmp_path / "missing.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="the folder holds no images"):
        run(empty)
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="is not an image this tool can read"):
        run(text)
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="fake.jpg is not an image"):
        run(fake)
    big = write_image(tmp_path / "big.png", 100, 120)
    with pytest.raises(DataError, match=r"100 = 12,000 pixels, over max_pixels=10,000"):
        run(big, "max_pixels=10000")
    with pytest.raises(CheckpointError, match="no such file"):
        run(big, ckpt_path=tmp_path / "none.ckpt")
    # A folder with one bad image among good ones: refused whole, before any output.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_image(mixed / "good.jpg", 64, 64)
    (mixed / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.png is not an image"):
        run(mixed)
    assert not out.exists()


def test_cli_not_an_image_exits_nonzero_with_one_line(ckpt, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fcn.predict",
            f"ckpt_path={ckpt}",
            f"input={text}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "notes.txt is not an image" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "run").glob("*.png"))


# ---- backends, batching ----------------------------------------------------------------------


def test_same_size_batches_never_mix_sizes():
    sizes = [(10, 20), (30, 40), (10, 20), (10, 20), (30, 40), (10, 20)]
    assert same_size_batches(sizes, 2) == [[0, 2], [3, 5], [1, 4]]
    assert same_size_batches(sizes, 1) == [[i] for i in (0, 2, 3, 5, 1, 4)]


def test_onnx_slide_flip_masks_equal_torch_on_voc_mini(
    ckpt, tiny_voc, voc_mini, tmp_path_factory, tmp_path, capsys
):
    onnx, _ = exported_model(tmp_path_factory, ckpt, tiny_voc, "onnx")
    # Three val images of VOC's usual 500 x 375, so batch_size=2 batches two of them.
    ids = [
        i
        for i in (voc_mini / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
        if Image.open(voc_mini / "JPEGImages" / f"{i}.jpg").size == (500, 375)
    ][:3]
    images = tmp_path / "val"
    images.mkdir()
    for i in ids:
        (images / f"{i}.jpg").symlink_to(voc_mini / "JPEGImages" / f"{i}.jpg")
    options = ["eval.mode=slide", "eval.window=[256,256]", "eval.stride=[171,171]"]
    options.append("eval.flip=true")
    torch_out, onnx_out = tmp_path / "torch", tmp_path / "onnx"
    predict(predict_cfg(ckpt, images, torch_out, *options, "num_workers=0", "progress=false"))
    # model= with backend=onnx; two workers decode, images of one size share a batch.
    predict(
        predict_cfg(
            None,
            images,
            onnx_out,
            *options,
            "backend=onnx",
            f"model={onnx}",
            "batch_size=2",
            "num_workers=2",
        )
    )
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("predicted 3 images in ") and "images/s end to end" in summary
    assert "backend=onnx, slide 256x256/171x171, flip" in summary, summary
    differing = total = 0
    for i in ids:
        a = np.asarray(Image.open(torch_out / f"{i}.png"))
        b = np.asarray(Image.open(onnx_out / f"{i}.png"))
        assert a.shape == b.shape == (375, 500)
        differing += int((a != b).sum())
        total += a.size
    assert len(np.unique(a)) > 1, "degenerate model"
    # ONNX Runtime's logits differ from PyTorch's by ~1e-6: a tie could flip a pixel.
    assert differing / total < 1e-4, f"{differing} of {total} pixels differ"


def test_backend_and_model_mismatches_are_config_errors(ckpt, tmp_path):
    image = write_image(tmp_path / "a.jpg", 40, 40)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="backend=onnx runs model=<.onnx file>, not ckpt_path"):
        predict(predict_cfg(ckpt, image, out, "backend=onnx"))
    with pytest.raises(ConfigError, match=r"is a torch file but backend=onnx: pass backend=torch"):
        predict(predict_cfg(None, image, out, "backend=onnx", f"model={ckpt}"))
    with pytest.raises(ConfigError, match="backend='tflite' is not one of torch, onnx"):
        predict(predict_cfg(ckpt, image, out, "backend=tflite"))
    with pytest.raises(CheckpointError, match=r"model=.*none.pt2: no such file"):
        predict(predict_cfg(None, image, out, "backend=exported_program", "model=none.pt2"))
    with pytest.raises(ConfigError, match="batch_size must be auto or an integer >= 1"):
        predict(predict_cfg(ckpt, image, out, "batch_size=0"))
    assert not out.exists()


def test_auto_decoding_workers_only_on_cores_the_forward_leaves_free(monkeypatch):
    import torch
    from omegaconf import OmegaConf

    auto, cpu = OmegaConf.create({"num_workers": "auto"}), torch.device("cpu")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert decoding_workers(auto, cpu) == 0  # torch's threads take both cores
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert decoding_workers(auto, cpu) == 1
    assert decoding_workers(auto, torch.device("cuda")) == 2
    assert decoding_workers(OmegaConf.create({"num_workers": 3}), cpu) == 3
    with pytest.raises(ConfigError, match="num_workers must be auto or an integer >= 0"):
        decoding_workers(OmegaConf.create({"num_workers": "two"}), cpu)


def test_lanes_split_torch_threads_on_cpu_and_overlap_writing_on_gpu(monkeypatch):
    import torch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert prediction_lanes(cpu, "torch") == (2, 1)  # 2 lanes of 1 thread
    assert prediction_lanes(cpu, "exported_program") == (2, 1)
    assert prediction_lanes(cpu, "onnx") == (1, 2)  # ONNX Runtime threads itself
    assert prediction_lanes(cuda, "torch") == (2, 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert prediction_lanes(cpu, "torch") == (4, 4)  # at most 4 batches' activations at once
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert prediction_lanes(cpu, "torch") == (1, 1)
    auto = {"batch_size": "auto"}
    assert batch_size_for(auto, cpu, "torch") == 1 and batch_size_for(auto, cuda, "torch") == 4
    assert batch_size_for(auto, cpu, "onnx") == 4
    assert batch_size_for({"batch_size": 3}, cpu, "torch") == 3


def test_cpu_lanes_run_single_threaded_and_threads_come_back(ckpt, tmp_path, monkeypatch):
    import torch

    import fcn.predict

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for k in range(5):
        write_image(inputs / f"im{k}.jpg", 40, 56 + 8 * (k % 2), seed=k)
    threads_in_lanes = []
    real = fcn.predict.predict_masks

    def spy(*args):
        threads_in_lanes.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(fcn.predict, "predict_masks", spy)
    with intra_op_threads(2):
        written = predict(predict_cfg(ckpt, inputs, out, "device=cpu", "progress=true"))
        assert torch.get_num_threads() == 2  # restored
    assert threads_in_lanes == [1] * 5  # batch_size auto: one image per forward on CPU
    assert [p.name for p in written] == [f"im{k}.png" for k in (0, 2, 4, 1, 3)]
    assert len(list(out.glob("*_overlay.jpg"))) == 5


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_overlay_blends_class_colours_over_the_image(alpha):
    import torch

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (3, 17, 23), dtype=np.uint8))
    table = np.asarray(voc_palette(), dtype=np.float64).reshape(-1, 3)
    for mask in (rng.integers(0, 256, (17, 23)).astype(np.uint8), rng.integers(-5, 300, (17, 23))):
        colour = table[np.clip(mask, 0, 255)]
        pixels = image.permute(1, 2, 0).numpy().astype(np.float64)
        exact = pixels + alpha * (colour - pixels)
        got = overlay(image, torch.from_numpy(mask), alpha)
        assert got.dtype == np.uint8 and got.shape == (17, 23, 3)
        assert np.all((exact - 1 < got) & (got <= exact + 1e-9))  # rounded down
        if alpha in (0.0, 1.0):  # the image itself, the colours themselves
            assert np.array_equal(got, exact.astype(np.uint8))
