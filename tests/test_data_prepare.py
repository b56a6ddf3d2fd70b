"""fcn-data: download (mirrors, resume, checksums), extraction, SBD conversion, checking.

Small archives in the exact VOC 2012 and SBD layouts are built here and served from a local
HTTP server on 127.0.0.1 with Range support; nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.archive_server import (
    NOT_IN_VOC_JPEGS,
    SBD_ONLY,
    SBD_TRAIN,
    TRAIN_AUG,
    VOC_VAL,
    Archives,
    _aug_args,
    _leftovers,
)
from hydra import compose, initialize_config_dir
from PIL import Image

from fcn.core.classes import voc_palette
from fcn.data.archives import VOC2012
from fcn.data.prepare import main as fcn_data

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- the official archives ----------------------------------------------------------------------


# -- download, verify, extract ------------------------------------------------------------------


# -- SBD conversion and train_aug ---------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(server, archives: Archives, tmp_path_factory: pytest.TempPathFactory):
    """DATA after one `fcn-data aug` from the local server, and what it printed."""
    server.log.clear()
    data = tmp_path_factory.mktemp("prepared") / "DATA"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fcn_data(_aug_args(data, server, archives))
    return data, out.getvalue()


def _read_png(path: Path) -> tuple[np.ndarray, Image.Image]:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im), im.copy()


def test_aug_converts_every_label_and_writes_train_aug(prepared, archives: Archives) -> None:
    data, printed = prepared
    voc = data / VOC2012.member
    aug = voc / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == sorted(
        set(archives.sbd_labels) | set(archives.voc_labels)
    )
    for i, expected in archives.sbd_labels.items():
        if i in archives.voc_labels:
            continue
        label, image = _read_png(aug / f"{i}.png")
        assert image.mode == "P" and image.getpalette()[: 3 * 21] == voc_palette()[: 3 * 21]
        np.testing.assert_array_equal(label, expected)  # the .mat array, value for value
    for i, png in archives.voc_labels.items():  # VOC ids keep VOC's finer labels
        assert (aug / f"{i}.png").read_bytes() == png
    assert (voc / "JPEGImages" / f"{NOT_IN_VOC_JPEGS}.jpg").read_bytes() == archives.sbd_images[
        NOT_IN_VOC_JPEGS
    ]
    train_aug = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    assert train_aug == TRAIN_AUG
    assert not set(train_aug) & set(VOC_VAL)
    assert "2008_000008" in SBD_TRAIN and "2008_000008" not in train_aug  # SBD train, VOC val
    assert f"train_aug.txt: {len(TRAIN_AUG)} ids" in printed
    assert re.search(rf"train_aug\s+{len(TRAIN_AUG)} pairs", printed)  # checked as loaded
    assert _leftovers(data) == []


def test_aug_tree_trains_with_data_voc_aug(prepared, monkeypatch, tmp_path: Path) -> None:
    from fcn.train import train

    data, _ = prepared
    monkeypatch.setenv("FCN_DATA", str(data))
    monkeypatch.delenv("VOC_ROOT", raising=False)
    monkeypatch.setenv("FCN_CACHE", str(tmp_path / "cache"))
    overrides = [
        "data=voc_aug", "data.crop_size=[32,32]", "data.batch_size=2", "data.num_workers=0",
        "trainer.accelerator=cpu", "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false", "logger=none",
    ]  # fmt: skip
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [*overrides, f"paths.output_dir={tmp_path}"])
    assert cfg.data.root == f"{data}/VOCdevkit/VOC2012"  # no data.root needed
    train(cfg)


def test_aug_rerun_skips_whole_files_and_redoes_partial_ones(
    prepared, server, archives: Archives, tmp_path: Path
) -> None:
    data = tmp_path / "DATA"
    shutil.copytree(prepared[0], data)
    aug = data / VOC2012.member / "SegmentationClassAug"
    cut, gone = aug / f"{SBD_ONLY[0]}.png", aug / f"{SBD_ONLY[1]}.png"
    cut.write_bytes(cut.read_bytes()[:20])
    gone.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in aug.glob("*.png") if p != cut}
    server.log.clear()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fcn_data([*_aug_args(data, server, archives), "--no-check"])
    assert server.log == []  # both trees were there: nothing downloaded
    assert "(2 files written by this run" in out.getvalue()
    for path in (cut, gone):
        np.testing.assert_array_equal(_read_png(path)[0], archives.sbd_labels[path.stem])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


# -- check --------------------------------------------------------------------------------------


def test_check_reports_voc_mini(voc_mini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fcn_data(["check", "--root", str(voc_mini)])
    out = capsys.readouterr().out
    assert re.search(r"train\s+295 pairs", out) and re.search(r"val\s+269 pairs", out)
    rows = {}
    for line in out.splitlines():
        m = re.fullmatch(r"\s*(\d+) .+?\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", line)
        if m:
            rows[int(m[1])] = [int(v.replace(",", "")) for v in m.groups()[1:]]
    assert sorted(rows) == [*range(21), 255]
    for split, column in (("train", 0), ("val", 2)):
        ids = (voc_mini / f"ImageSets/Segmentation/{split}.txt").read_text().split()
        counts = sum(
            np.bincount(np.asarray(Image.open(voc_mini / f"SegmentationClass/{i}.png")).ravel(),
                        minlength=256) for i in ids
        )  # fmt: skip
        assert {v: rows[v][column] for v in rows} == {v: int(counts[v]) for v in rows}
        assert all(rows[c][column] > 0 for c in range(21))  # every class in both splits


def test_check_refuses_train_aug_sharing_val_ids(tiny_voc: Path, tmp_path: Path) -> None:
    """Through the real entry point: one line naming the file, exit status 2."""
    root = tmp_path / "VOC"
    shutil.copytree(tiny_voc, root)
    shutil.copytree(root / "SegmentationClass", root / "SegmentationClassAug")
    splits = root / "ImageSets" / "Segmentation"
    val_id = splits.joinpath("val.txt").read_text().split()[0]
    splits.joinpath("train_aug.txt").write_text(splits.joinpath("train.txt").read_text() + val_id)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "fcn.data.prepare", "check", "--root", str(root),
         "--num-classes", "6"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "train_aug.txt shares 1 ids with val.txt" in result.stderr and val_id in result.stderr
