"""fcn-data's archives: checksums verified before extraction, downloads resumed, nothing half-
extracted left behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers.archive_server import VOC_VAL, Archives, _error_line, _leftovers, _sha256

from fcn.core.errors import ConfigError
from fcn.data.archives import SBD, VOC2012, Checksum
from fcn.data.prepare import main as fcn_data


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
