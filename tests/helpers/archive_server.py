"""Tiny VOC and SBD archives in their published layouts, served over HTTP on localhost with Range
support (resumable downloads), as pytest fixtures (registered in conftest.py).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from scipy.sparse import csc_matrix

from fcn.core.classes import VOID_INDEX, voc_palette
from fcn.data.prepare import main as fcn_data

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
