"""fcn-eval: whole/slide/flip/scale inference, metrics.json against NumPy, figure, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.trained import (
    NUM_CLASSES,
    REPO,
    eval_cfg,
    exported_model,
    predict_cfg,
)
from PIL import Image

from fcn.core.errors import CheckpointError, ConfigError, DataError
from fcn.evaluate import evaluate
from fcn.models.inference import InferenceOptions, predict_logits, window_starts
from fcn.predict import predict


def numpy_scores(preds: list[np.ndarray], truths: list[np.ndarray], n: int) -> dict:
    """The FCN metrics straight from their definitions (DESIGN section 5), void excluded."""
    cm = np.zeros((n, n), dtype=np.int64)
    for p, t in zip(preds, truths, strict=True):
        valid = t != 255
        cm += np.bincount(n * t[valid].astype(np.int64) + p[valid], minlength=n * n).reshape(n, n)
    diag, rows, cols = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = diag / rows
        iou = diag / (rows + cols - diag)
    return {
        "pixel_acc": diag.sum() / cm.sum(),
        "mean_acc": np.nanmean(acc),
        "mIoU": np.nanmean(iou),
        "fwIoU": float(np.sum((rows / cm.sum())[rows > 0] * iou[rows > 0])),
        "iou": iou,
    }


# ---- inference core ---------------------------------------------------------------------------


def test_window_starts_cover_the_side_and_end_flush():
    assert window_starts(100, 100, 50) == [0]
    assert window_starts(80, 100, 50) == [0]
    assert window_starts(100, 40, 30) == [0, 30, 60]
    assert window_starts(101, 40, 30) == [0, 30, 60, 61]


def test_slide_and_flip_average_exactly_with_a_pointwise_model():
    # A 1x1 conv sees one pixel: every window and the mirror give the same logits, so any
    # error in placing, counting or un-flipping windows shows up as a difference.
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 5, 1).eval()
    images = torch.randn(2, 3, 97, 131)
    whole = predict_logits(model, images, InferenceOptions())
    slide = InferenceOptions(mode="slide", window=(40, 48), stride=(25, 30), flip=True)
    torch.testing.assert_close(predict_logits(model, images, slide), whole)
    # Inputs under 32 px are padded for the FCN and cropped back.
    tiny = torch.randn(1, 3, 20, 33)
    assert predict_logits(model, tiny, slide).shape == (1, 5, 20, 33)


def test_loaded_checkpoint_holds_every_saved_weight(ckpt):
    # Built under without_random_init: every weight must come from the file, none left as allocated.
    from fcn.deploy.model_files import load_checkpoint, rebuild_module

    module = rebuild_module(ckpt)
    saved = load_checkpoint(ckpt)["state_dict"]
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert module.val_metrics.confmat.sum() == 0  # metric states built as usual


def test_slide_with_a_window_covering_the_image_equals_whole(ckpt):
    from fcn.deploy.model_files import rebuild_module

    model = rebuild_module(ckpt).model
    images = torch.randn(1, 3, 97, 131)
    whole = predict_logits(model, images, InferenceOptions())
    covering = InferenceOptions(mode="slide", window=(128, 160), stride=(64, 64))
    assert torch.equal(predict_logits(model, images, covering), whole)
    # Smaller windows and several scales still give logits at the input's size.
    multi = InferenceOptions(mode="slide", window=(64, 64), stride=(48, 48), scales=(0.75, 1.25))
    assert predict_logits(model, images, multi).shape == whole.shape


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mode": "tiled"}, "eval.mode='tiled'"),
        ({"mode": "slide", "window": [16, 64]}, "eval.window"),
        ({"stride": [0, 4]}, "eval.stride"),
        ({"scales": []}, "eval.scales"),
        ({"flip": "yes"}, "eval.flip"),
    ],
)
def test_bad_inference_options_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        InferenceOptions.from_config(override)


# ---- fcn-eval --------------------------------------------------------------------------------


def test_metrics_json_equals_numpy_on_predicted_masks(ckpt, tiny_voc, tmp_path):
    result = evaluate(eval_cfg(ckpt, tiny_voc, tmp_path / "eval"))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["num_images"] == 4 == result["num_images"]
    assert set(saved) >= {"pixel_acc", "mean_acc", "mIoU", "fwIoU", "per_class_iou"}

    # fcn-predict on the same val images, then the metrics from the written PNGs by NumPy.
    ids = (tiny_voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    images = tmp_path / "val_images"
    images.mkdir()
    for i in ids:
        (images / f"{i}.jpg").write_bytes((tiny_voc / "JPEGImages" / f"{i}.jpg").read_bytes())
    predict(predict_cfg(ckpt, images, tmp_path / "pred"))
    preds = [np.asarray(Image.open(tmp_path / "pred" / f"{i}.png")) for i in ids]
    truths = [np.asarray(Image.open(tiny_voc / "SegmentationClass" / f"{i}.png")) for i in ids]
    assert len({int(c) for p in preds for c in np.unique(p)}) > 1, "degenerate model"
    ref = numpy_scores(preds, truths, NUM_CLASSES)
    for key in ("pixel_acc", "mean_acc", "mIoU", "fwIoU"):
        assert saved[key] == pytest.approx(ref[key], abs=1e-9), key
    names = list(saved["per_class_iou"])
    assert names == ["background", "disc", "square", "triangle", "ring", "cross"]
    for name, iou in zip(names, ref["iou"], strict=True):
        assert saved["per_class_iou"][name] == (None if np.isnan(iou) else pytest.approx(iou))


def test_flip_and_scale_tta_and_the_figure(ckpt, tiny_voc, tmp_path, capsys):
    out = tmp_path / "tta"
    cfg = eval_cfg(
        ckpt,
        tiny_voc,
        out,
        "eval.flip=true",
        "eval.scales=[0.75,1.0]",
        "eval.save_figure=true",
        "eval.num_figure_images=3",
    )
    result = evaluate(cfg)
    assert 0.0 <= result["mIoU"] <= 1.0 and result["num_images"] == 4
    assert result["eval"]["flip"] is True
    table = capsys.readouterr().out
    assert "triangle" in table and "mIoU" in table
    # Three rows (image | truth | prediction) of the first three val images, 4 px apart.
    sizes = [Image.open(p).size for p in sorted((tiny_voc / "JPEGImages").glob("val_*.jpg"))[:3]]
    figure = Image.open(out / "predictions.png")
    assert figure.size == (3 * max(w for w, _ in sizes), sum(h for _, h in sizes) + 2 * 4)


def test_slide_mode_with_covering_window_matches_whole_metrics(ckpt, tiny_voc, tmp_path):
    whole = evaluate(eval_cfg(ckpt, tiny_voc, tmp_path / "whole"))
    slide = evaluate(
        eval_cfg(ckpt, tiny_voc, tmp_path / "slide", "eval.mode=slide", "eval.window=[256,256]")
    )
    for key in ("pixel_acc", "mean_acc", "mIoU", "fwIoU", "per_class_iou"):
        assert slide[key] == whole[key]


# ---- bad input -------------------------------------------------------------------------------


def test_num_classes_mismatch_is_a_config_error(ckpt, tiny_voc, tmp_path):
    cfg = eval_cfg(ckpt, tiny_voc, tmp_path / "out", "data.num_classes=21")
    with pytest.raises(ConfigError, match="data.num_classes=21 .* predicts 6 classes"):
        evaluate(cfg)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_split_is_a_data_error(ckpt, tiny_voc, tmp_path):
    with pytest.raises(DataError, match="split list .*nosuch.txt not found"):
        evaluate(eval_cfg(ckpt, tiny_voc, tmp_path / "out", "split=nosuch"))


def test_checkpoint_of_another_model_is_refused(ckpt, tiny_voc, tmp_path):
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["backbone"] = "resnet34"
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    fit = "do not fit a resnet34/fcn8s FCN with 6 classes .* e.g. missing model.backbone"
    with pytest.raises(CheckpointError, match=fit):
        evaluate(eval_cfg(other, tiny_voc, tmp_path / "out"))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(1)}, "hyper_parameters": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an fcn SegmentationModule checkpoint"):
        evaluate(eval_cfg(foreign, tiny_voc, tmp_path / "out"))
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        evaluate(eval_cfg(junk, tiny_voc, tmp_path / "out"))


def test_cli_missing_checkpoint_exits_nonzero_with_one_line(tmp_path):
    missing = tmp_path / "nope.ckpt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fcn.evaluate",
            f"ckpt_path={missing}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "FCN_CACHE": str(tmp_path / "cache")},
        timeout=300,
    )
    assert proc.returncode == 2
    assert f"error: ckpt_path={missing}: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_with_exported_backends_scores_like_pytorch(
    ckpt, tiny_voc, tmp_path_factory, tmp_path
):

    options = ("eval.flip=true",)
    ref = evaluate(eval_cfg(ckpt, tiny_voc, tmp_path / "torch", *options))
    for fmt in ("onnx", "exported_program"):
        path, _ = exported_model(tmp_path_factory, ckpt, tiny_voc, fmt)
        cfg = eval_cfg(None, tiny_voc, tmp_path / fmt, f"backend={fmt}", f"model={path}", *options)
        got = evaluate(cfg)
        assert (got["backend"], got["model"]) == (fmt, str(path))
        assert got["num_images"] == ref["num_images"] == 4
        for key in ("pixel_acc", "mean_acc", "mIoU", "fwIoU"):
            assert got[key] == pytest.approx(ref[key], abs=1e-4), (fmt, key)
