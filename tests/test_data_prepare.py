"""fcn-data: download (mirrors, resume, checksums), extraction, SBD conversion, checking.

Small archives in the exact VOC 2012 and SBD layouts are built here and served from a local
HTTP server on 127.0.0.1 with Range support; nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image
from scipy.io import savemat
from scipy.sparse import csc_matrix

from fcn.core.classes import VOID_INDEX, voc_palette
from fcn.core.errors import ConfigError
from fcn.data.archives import SBD, VOC2012, Checksum
from fcn.data.prepare import main as fcn_data

REPO_ROOT = Path(__file__).resolve().parents[1]

VOC_TRAIN = ["2008_000002", "2008_000003", "2008_000007"]
VOC_VAL = ["2008_000008", "2008_000009", "2008_000015"]
# SBD's own split: 000002 is also VOC train, 000008 and 000009 are VOC val ids.
SBD_TRAIN = ["2008_000002", "2008_000008", "2008_000010", "2008_000011"]
SBD_VAL = ["2008_000009", "2008_000012", "2008_000013"]
SBD_ONLY = ["2008_000010", "2008_000011", "2008_000012", "2008_000013"]
TRAIN_AUG = sorted({*SBD_TRAIN, *SBD_VAL, *VOC_TRAIN} - set(VOC_VAL))
NOT_IN_VOC_JPEGS = "2008_000013"  # its image is only in SBD's img/, as a test of the copy


@dataclass
class Archives:
    voc: bytes
    sbd: bytes
    sbd_labels: dict[str, np.ndarray]  # what each cls/<id>.mat holds
    voc_labels: dict[str, bytes]  # VOC's SegmentationClass/<id>.png bytes
    sbd_images: dict[str, bytes]


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _jpeg(rng: np.random.Generator, h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _blocks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A label of a few rectangles of random VOC classes on background."""
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(3):
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        dy, dx = int(rng.integers(6, h)), int(rng.integers(6, w))
        label[y : y + dy, x : x + dx] = rng.integers(1, 21)
    return label


def _tar(members: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    """VOCtrainval_11-May-2012.tar and benchmark.tgz with a handful of real-format files."""
    rng = np.random.default_rng(0)
    sizes = {i: (int(rng.integers(36, 52)), int(rng.integers(40, 60))) for i in {*VOC_TRAIN,
             *VOC_VAL, *SBD_TRAIN, *SBD_VAL}}  # fmt: skip
    voc_root, voc = "VOCdevkit/VOC2012", {}
    voc_labels = {}
    for i in sorted(set(VOC_TRAIN) | set(VOC_VAL)):
        label = _blocks(rng, *sizes[i])
        label[:, 0] = VOID_INDEX  # VOC's void borders
        png = io.BytesIO()
        im = Image.fromarray(label, mode="P")
        im.putpalette(voc_palette())
        im.save(png, "PNG")
        voc_labels[i] = voc[f"{voc_root}/SegmentationClass/{i}.png"] = png.getvalue()
    for i in sorted(set(sizes) - {NOT_IN_VOC_JPEGS}):  # VOC 2012 has every SBD image
        voc[f"{voc_root}/JPEGImages/{i}.jpg"] = _jpeg(rng, *sizes[i])
    for name, ids in (("train", VOC_TRAIN), ("val", VOC_VAL), ("trainval", VOC_TRAIN + VOC_VAL)):
        voc[f"{voc_root}/ImageSets/Segmentation/{name}.txt"] = "".join(
            f"{i}\n" for i in ids
        ).encode()

    sbd, sbd_labels, sbd_images = {}, {}, {}
    scratch = tmp_path_factory.mktemp("sbd_mat")
    for i in sorted(set(SBD_TRAIN) | set(SBD_VAL)):
        label = sbd_labels[i] = _blocks(rng, *sizes[i])
        # SBD's struct: GTcls.{Boundaries (20x1 cell of sparse), Segmentation, CategoriesPresent}
        boundaries = [[csc_matrix(np.zeros(label.shape, dtype=bool))] for _ in range(20)]
        present = np.unique(label[label > 0]).astype(np.uint8)
        gt = {"Boundaries": boundaries, "Segmentation": label, "CategoriesPresent": present}
        savemat(scratch / f"{i}.mat", {"GTcls": gt}, do_compression=True)
        sbd[f"benchmark_RELEASE/dataset/cls/{i}.mat"] = (scratch / f"{i}.mat").read_bytes()
        image = voc.get(f"{voc_root}/JPEGImages/{i}.jpg") or _jpeg(rng, *sizes[i])
        sbd_images[i] = sbd[f"benchmark_RELEASE/dataset/img/{i}.jpg"] = image
    for name, ids in (("train", SBD_TRAIN), ("val", SBD_VAL)):
        sbd[f"benchmark_RELEASE/dataset/{name}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    return Archives(_tar(voc, "w"), _tar(sbd, "w:gz"), sbd_labels, voc_labels, sbd_images)


class _RangeHandler(BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` (206); drops the connection halfway once per listed path."""

    def do_GET(self) -> None:
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if ranged:
            start = int(ranged[1])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path in server.drop_once:
            server.drop_once.discard(self.path)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.close_connection = True  # hang up: the client got half of what it was promised
            return
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(archives: Archives):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.files = {"/voc.tar": archives.voc, "/benchmark.tgz": archives.sbd}
    httpd.log, httpd.drop_once = [], set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def http(server):
    server.log.clear()
    server.drop_once.clear()
    return server


def _aug_args(data: Path, server, archives: Archives) -> list[str]:
    return [
        "aug", "--root", str(data), "--workers", "2",
        "--voc-url", f"{server.url}/voc.tar", "--voc-checksum", _sha256(archives.voc),
        "--sbd-url", f"{server.url}/benchmark.tgz",
        "--sbd-checksum", f"md5:{hashlib.md5(archives.sbd).hexdigest()}",
    ]  # fmt: skip


def _leftovers(data: Path) -> list[Path]:
    return [p for p in data.rglob("*") if ".tmp-" in p.name or p.name.endswith(".part")]


def _error_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        fcn_data(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ")
    return err


# -- the official archives ----------------------------------------------------------------------


def test_official_digests_come_from_torchvision() -> None:
    """Pinned to torchvision.datasets.voc.DATASET_YEAR_DICT and SBDataset's class attributes."""
    assert VOC2012.filename == "VOCtrainval_11-May-2012.tar"
    assert VOC2012.md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert VOC2012.urls[0].startswith("https://") and VOC2012.member == "VOCdevkit/VOC2012"
    assert (SBD.filename, SBD.md5) == ("benchmark.tgz", "82b4d87ceb2ed10f6038a1cba92111cb")
    assert SBD.urls[0].endswith("/benchmark.tgz") and SBD.member == "benchmark_RELEASE"


def test_checksum_syntax() -> None:
    assert str(Checksum.parse("MD5:" + "A" * 32)) == "md5:" + "a" * 32
    assert Checksum.parse("sha256:" + "0" * 64).algorithm == "sha256"
    for bad in ("md5:123", "sha1:" + "0" * 40, "0" * 32, "md5:" + "g" * 32):
        with pytest.raises(ConfigError, match="--checksum"):
            Checksum.parse(bad)


# -- download, verify, extract ------------------------------------------------------------------


def test_interrupted_download_resumes_byte_identical(http, archives: Archives, tmp_path: Path):
    data = tmp_path / "DATA"
    http.drop_once.add("/voc.tar")
    fcn_data(["voc", "--root", str(data), "--url", f"{http.url}/gone.tar",
              "--url", f"{http.url}/voc.tar", "--checksum", _sha256(archives.voc)])  # fmt: skip
    half = len(archives.voc) // 2
    # The first mirror 404s, the second hangs up halfway, the retry asks for the rest only.
    assert http.log == [("/gone.tar", None), ("/voc.tar", None), ("/voc.tar", f"bytes={half}-")]
    assert (data / VOC2012.filename).read_bytes() == archives.voc
    assert (data / VOC2012.member / "ImageSets/Segmentation/val.txt").read_text().split() == VOC_VAL
    assert _leftovers(data) == []


def test_partial_download_of_a_killed_run_is_resumed(http, archives: Archives, tmp_path: Path):
    data = tmp_path / "DATA"
    data.mkdir()
    (data / f"{VOC2012.filename}.part").write_bytes(archives.voc[:1000])
    fcn_data(["voc", "--root", str(data), "--url", f"{http.url}/voc.tar",
              "--checksum", _sha256(archives.voc)])  # fmt: skip
    assert http.log == [("/voc.tar", "bytes=1000-")]
    assert (data / VOC2012.filename).read_bytes() == archives.voc


def test_corrupted_archive_is_refused_and_nothing_is_extracted(
    http, archives: Archives, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "DATA"
    bad = bytearray(archives.voc)
    bad[len(bad) // 3] ^= 0xFF
    http.files["/bad.tar"] = bytes(bad)
    err = _error_line(
        capsys,
        ["voc", "--root", str(data), "--url", f"{http.url}/bad.tar",
         "--checksum", _sha256(archives.voc)],
    )  # fmt: skip
    assert VOC2012.filename in err
    assert hashlib.sha256(archives.voc).hexdigest() in err  # expected
    assert hashlib.sha256(bad).hexdigest() in err  # actual
    assert not (data / "VOCdevkit").exists() and _leftovers(data) == []
    assert (data / f"{VOC2012.filename}.rejected").read_bytes() == bad  # kept, not lost


def test_archive_without_the_official_digest_needs_checksum(
    archives: Archives, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / VOC2012.filename
    archive.write_bytes(archives.voc)
    err = _error_line(capsys, ["voc", "--root", str(tmp_path / "DATA"), "--archive", str(archive)])
    assert str(archive) in err and f"official {VOC2012.md5}" in err
    assert hashlib.md5(archives.voc).hexdigest() in err
    assert not (tmp_path / "DATA" / "VOCdevkit").exists()


def test_damaged_archive_leaves_no_partial_tree(
    archives: Archives, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even a truncated archive the user vouched for (--checksum) leaves DATA clean."""
    data = tmp_path / "DATA"
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(archives.voc[: len(archives.voc) * 3 // 5])
    digest = _sha256(truncated.read_bytes())
    err = _error_line(
        capsys, ["voc", "--root", str(data), "--archive", str(truncated), "--checksum", digest]
    )
    assert str(truncated) in err
    assert not (data / "VOCdevkit" / "VOC2012").exists() and _leftovers(data) == []


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
