"""`from fcn import load_segmenter`: a PIL image, an array, a tensor and a path give the mask
fcn-predict writes; checkpoints and exports load alike; colours and overlays; bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers.trained import exported_model, predict_cfg

# The session's tiny checkpoint and exports (tests/ is on sys.path under pytest).
from PIL import Image

from fcn import load_segmenter
from fcn.core.classes import voc_colormap
from fcn.core.errors import ConfigError, DataError
from fcn.predict import predict


def test_every_image_form_gives_fcn_predicts_mask(ckpt, tiny_voc, tmp_path):
    path = sorted((tiny_voc / "JPEGImages").glob("val_*.jpg"))[0]
    written = predict(predict_cfg(ckpt, path, tmp_path / "cli", "num_workers=0", "progress=false"))
    expected = np.asarray(Image.open(written[0]))

    seg = load_segmenter(ckpt)
    pil = Image.open(path)
    array = np.asarray(pil.convert("RGB"))
    masks = {
        "path": seg.predict(path),
        "str": seg.predict(str(path)),
        "PIL": seg.predict(pil),
        "array": seg.predict(array),
        "tensor": seg.predict(torch.from_numpy(array).permute(2, 0, 1)),
    }
    assert len(np.unique(expected)) > 1, "degenerate model"
    for name, mask in masks.items():
        assert mask.dtype == np.uint8 and mask.shape == (pil.height, pil.width), name
        assert np.array_equal(mask, expected), name

    assert seg.classes == ["background", "disc", "square", "triangle", "ring", "cross"]
    colours = seg.colorize(expected)
    assert colours.shape == (*expected.shape, 3) and colours.dtype == np.uint8
    for index in np.unique(expected):  # VOC's colours: class 1 is (128, 0, 0), ...
        ys, xs = np.nonzero(expected == index)
        assert colours[ys[0], xs[0]].tolist() == list(voc_colormap(6)[index])
    # fcn-predict's overlay file is the same blend, JPEG-encoded at quality 90.
    blended = io.BytesIO()
    Image.fromarray(seg.overlay(path, expected)).save(blended, format="JPEG", quality=90)
    written_overlay = written[0].with_name(f"{path.stem}_overlay.jpg")
    assert np.array_equal(np.asarray(Image.open(blended)), np.asarray(Image.open(written_overlay)))
    # Test-time options as keywords, as in fcn-eval's `eval` block.
    slide = load_segmenter(ckpt, mode="slide", window=[256, 256], flip=False)
    assert np.array_equal(slide.predict(array), expected)  # one window covers the image


@pytest.mark.parametrize("fmt", ["onnx", "exported_program"])
def test_exports_load_like_checkpoints(fmt, ckpt, tiny_voc, tmp_path_factory):
    path, _ = exported_model(tmp_path_factory, ckpt, tiny_voc, fmt)
    exported, reference = load_segmenter(path, flip=True), load_segmenter(ckpt, flip=True)
    assert exported.loaded.backend == fmt and exported.classes == reference.classes
    assert exported.info.config_sha256 == reference.info.config_sha256
    for image in sorted((tiny_voc / "JPEGImages").glob("val_*.jpg"))[:2]:
        a, b = exported.predict(image), reference.predict(image)
        assert (a != b).mean() < 1e-4


def test_bad_images_and_options_say_what_is_expected(ckpt, tmp_path):
    seg = load_segmenter(ckpt)
    with pytest.raises(DataError, match=r"H x W x 3 uint8 \(RGB\), got float32 \(4, 4, 3\)"):
        seg.predict(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(DataError, match=r"3 x H x W uint8 \(RGB\), got torch.uint8 \(4, 4, 3\)"):
        seg.predict(torch.zeros(4, 4, 3, dtype=torch.uint8))
    with pytest.raises(DataError, match="no such file"):
        seg.predict(tmp_path / "missing.jpg")
    with pytest.raises(DataError, match="got list"):
        seg.predict([1, 2, 3])
    with pytest.raises(DataError, match="image is 40x50 but the mask is 40x40"):
        seg.overlay(np.zeros((40, 50, 3), np.uint8), np.zeros((40, 40), np.uint8))
    with pytest.raises(ConfigError, match="load_segmenter.mode='tiles'"):
        load_segmenter(ckpt, mode="tiles")
    with pytest.raises(ConfigError, match="cannot tell its backend from the suffix '.bin'"):
        load_segmenter(tmp_path / "model.bin")
