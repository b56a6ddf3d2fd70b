"""The VOC 2012 and SBD archives: where they are served, their digests, verified extraction.

An archive is used only after its digest matches the official one (from torchvision's
dataset code) or the one the user vouches for with `--checksum`. Extraction goes into a
private folder inside DATA and the finished tree is renamed into place, so DATA never holds
a half-extracted tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import SBDataset
from torchvision.datasets.utils import calculate_md5, extract_archive
from torchvision.datasets.voc import DATASET_YEAR_DICT

from fcn.core.atomic import remove_stale_temps, temp_path
from fcn.core.errors import ConfigError, DataError
from fcn.data.download import DownloadFailed, download

_ALGORITHMS = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class Checksum:
    """A file digest, written `md5:HEX` or `sha256:HEX`."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        algorithm, _, hexdigest = text.strip().partition(":")
        algorithm, hexdigest = algorithm.lower(), hexdigest.lower()
        size = _ALGORITHMS.get(algorithm)
        ok = size is not None and len(hexdigest) == size
        if not ok or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ConfigError(
                f"--checksum {text!r} is not a digest: write md5:<32 hex digits> or "
                f"sha256:<64 hex digits>"
            )
        return cls(algorithm, hexdigest)

    def of(self, path: Path) -> str:
        """The same kind of digest computed over `path`."""
        if self.algorithm == "md5":
            return calculate_md5(path)
        with open(path, "rb") as f:
            return hashlib.file_digest(f, self.algorithm).hexdigest()

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class ArchiveSpec:
    """One official archive and the folder of it that lands in DATA."""

    name: str  # the fcn-data subcommand
    title: str
    filename: str
    urls: tuple[str, ...]  # official host first, then mirrors serving the same bytes
    md5: str
    member: str  # folder inside the archive, extracted to the same path under DATA
    marker: str  # a file inside `member` that only a complete tree has

    @property
    def checksum(self) -> Checksum:
        return Checksum("md5", self.md5)


_VOC = DATASET_YEAR_DICT["2012"]
VOC2012 = ArchiveSpec(
    name="voc",
    title="PASCAL VOC 2012 trainval",
    filename=_VOC["filename"],
    urls=(
        _VOC["url"],
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
    ),
    md5=_VOC["md5"],
    member="VOCdevkit/VOC2012",
    marker="ImageSets/Segmentation/val.txt",
)
SBD = ArchiveSpec(
    name="sbd",
    title="SBD (Semantic Boundaries Dataset)",
    filename=SBDataset.filename,
    urls=(
        SBDataset.url,
        "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
        "benchmark.tgz",
    ),
    md5=SBDataset.md5,
    member="benchmark_RELEASE",
    marker="dataset/train.txt",
)


def verify(path: Path, expected: Checksum, official: bool, fix: str) -> None:
    """DataError naming `path`, the expected and the actual digest when they differ."""
    print(f"verifying {path} ({expected.algorithm}) ...", file=sys.stderr)
    try:
        actual = expected.of(path)
    except OSError as err:
        raise DataError(f"cannot read archive {path} ({err.strerror or err})") from None
    if actual != expected.hexdigest:
        whose = "the official" if official else "the --checksum"
        raise DataError(
            f"archive {path} has {expected.algorithm} {actual}, expected {whose} "
            f"{expected.hexdigest}: it is truncated, corrupted or a different file; {fix}, "
            f"or pass --checksum ALGO:HEX for an archive you trust"
        )


def obtain(
    spec: ArchiveSpec,
    root: Path,
    urls: Sequence[str] | None = None,
    archive: Path | None = None,
    checksum: Checksum | None = None,
    retries: int = 3,
) -> Path:
    """A verified copy of the archive: `archive` as given, one already in ROOT, or downloaded.

    URLs are tried in order; a download resumes from ROOT/<file>.part. Bytes that fail the
    check are kept as ROOT/<file>.rejected (never silently thrown away) and the next URL tried.
    """
    expected = checksum or spec.checksum
    official = checksum is None
    if archive is not None:
        archive = archive.expanduser()
        if not archive.is_file():
            raise DataError(f"--archive {archive} is not a file: give the path of {spec.filename}")
        verify(archive, expected, official, "get a fresh copy")
        return archive
    target = root / spec.filename
    if target.is_file():
        verify(target, expected, official, "delete it to download it again")
        return target
    part = target.with_name(target.name + ".part")
    rejected = target.with_name(target.name + ".rejected")
    problems = []
    for url in urls or spec.urls:
        print(f"downloading {url}", file=sys.stderr)
        try:
            download(url, part, retries, label=spec.filename)
        except DownloadFailed as err:
            problems.append(str(err))
            continue
        except OSError as err:  # not the network (that is DownloadFailed): disk full, no access
            raise DataError(
                f"cannot write {part} ({err.strerror or err}): free space or "
                f"choose another --root; the download resumes from there"
            ) from None
        actual = expected.of(part)
        if actual == expected.hexdigest:
            os.replace(part, target)
            return target
        os.replace(part, rejected)
        problems.append(
            f"{url} sent {expected.algorithm} {actual}, expected {expected.hexdigest} "
            f"(kept as {rejected})"
        )
    kept = f"; the partial download {part} resumes next time" if part.exists() else ""
    raise DataError(
        f"could not get {spec.filename}: {'; '.join(problems)}{kept}. Try --url MIRROR, or "
        f"--archive FILE for a copy you have"
    )


def install(spec: ArchiveSpec, archive: Path, root: Path) -> Path:
    """Extract `archive` and move its `spec.member` folder to ROOT/<member> in one rename."""
    target = root / spec.member
    remove_stale_temps(root)
    scratch = temp_path(root / f"extract-{spec.name}")
    print(f"extracting {archive} into {root} ...", file=sys.stderr)
    try:
        scratch.mkdir(parents=True)
        try:
            extract_archive(archive, scratch)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, RuntimeError) as err:
            raise DataError(
                f"cannot extract {archive} ({err}): the archive is damaged; get a fresh copy"
            ) from None
        except OSError as err:
            raise DataError(f"cannot extract {archive} into {root} ({err})") from None
        source = scratch / spec.member
        if not (source / spec.marker).is_file():
            raise DataError(
                f"archive {archive} has no {spec.member}/{spec.marker}: is it the "
                f"{spec.title} archive ({spec.filename})?"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def ensure(
    spec: ArchiveSpec,
    root: Path,
    urls: Sequence[str] | None = None,
    archive: Path | None = None,
    checksum: Checksum | None = None,
    retries: int = 3,
) -> Path:
    """ROOT/<member>, extracted from a verified archive unless a complete tree is there."""
    target = root / spec.member
    if (target / spec.marker).is_file():
        print(f"{spec.title}: {target} is there", file=sys.stderr)
        return target
    if target.exists():
        raise DataError(
            f"{target} exists but has no {spec.marker}: move it away (nothing in it was "
            f"changed) and run again to extract a complete tree"
        )
    root.mkdir(parents=True, exist_ok=True)
    path = obtain(spec, root, urls, archive, checksum, retries)
    return install(spec, path, root)
