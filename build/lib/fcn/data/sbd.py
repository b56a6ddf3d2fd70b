"""VOC + SBD "aug": SBD's `.mat` labels as VOC palette PNGs and the standard train_aug list.

SBD ships its class labels as MATLAB structs (`benchmark_RELEASE/dataset/cls/<id>.mat`,
`GTcls.Segmentation`: uint8 class indices, no void). `build_aug` writes, inside the VOC 2012
tree, `SegmentationClassAug/<id>.png` for every SBD id (VOC's own finer label, with its void
borders, for every VOC id) and `ImageSets/Segmentation/train_aug.txt`: SBD train + SBD val +
VOC train, minus every VOC val id (10,582 ids on the official archives).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.io import loadmat
from tqdm import tqdm

from fcn.core.atomic import atomic_file, remove_stale_temps, write_text_atomic
from fcn.core.classes import VOID_INDEX, voc_palette
from fcn.core.errors import DataError
from fcn.data.voc import IMAGE_DIR, SPLIT_DIR, read_split

AUG_LABEL_DIR = "SegmentationClassAug"
AUG_SPLIT = "train_aug"
VOC_LABEL_DIR = "SegmentationClass"


def read_sbd_label(path: Path) -> np.ndarray:
    """`GTcls.Segmentation` of an SBD `cls/*.mat` file as uint8 HxW class indices."""
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=["GTcls"])
    except Exception as err:  # scipy raises ValueError, TypeError, OSError... for bad files
        raise DataError(f"cannot read SBD label {path} ({err}): extract SBD again") from None
    segmentation = getattr(mat.get("GTcls"), "Segmentation", None)
    if not isinstance(segmentation, np.ndarray) or segmentation.ndim != 2:
        raise DataError(
            f"{path} has no 2-D GTcls.Segmentation array: is it a file of SBD's dataset/cls/?"
        )
    if segmentation.dtype != np.uint8:
        if segmentation.size and (segmentation.min() < 0 or segmentation.max() > VOID_INDEX):
            raise DataError(f"{path} has label values outside 0..255: it is not an SBD label")
        segmentation = segmentation.astype(np.uint8)
    return np.ascontiguousarray(segmentation)


def write_label_png(label: np.ndarray, path: Path) -> None:
    """Save class indices as a palette PNG with VOC's colours, as VOC's own labels are."""
    image = Image.fromarray(label, mode="P")
    image.putpalette(voc_palette())
    image.save(path, format="PNG")


def _is_whole(source: Path, dest: Path) -> bool:
    """Whether `dest` is a finished output: a copy of the same size, or a PNG that decodes."""
    try:
        if source.suffix != ".mat":
            return dest.stat().st_size == source.stat().st_size
        with Image.open(dest) as image:
            image.load()
            return image.mode == "P"
    except (OSError, SyntaxError, UnidentifiedImageError):
        return False


def convert_one(job: tuple[str, str]) -> bool:
    """Make `dest` from `source` (.mat: convert; else copy); False if it was already whole."""
    source, dest = Path(job[0]), Path(job[1])
    if _is_whole(source, dest):
        return False
    with atomic_file(dest) as tmp:
        if source.suffix == ".mat":
            write_label_png(read_sbd_label(source), tmp)
        else:
            shutil.copyfile(source, tmp)
    return True


def run_jobs(jobs: list[tuple[str, str]], workers: int, desc: str) -> int:
    """Run `convert_one` over `jobs` on `workers` processes with a progress bar; count writes."""
    written = 0
    with tqdm(total=len(jobs), desc=desc, unit="file", file=sys.stderr) as bar:
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                written += convert_one(job)
                bar.update()
        else:
            chunk = max(1, min(64, len(jobs) // (4 * workers)))
            with multiprocessing.Pool(workers) as pool:
                for done in pool.imap_unordered(convert_one, jobs, chunksize=chunk):
                    written += done
                    bar.update()
    return written


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"SBD list {path} not found: extract SBD again (fcn-data sbd)")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class AugSummary:
    num_ids: int
    sbd_train: int
    sbd_val: int
    voc_train: int
    dropped_val: int  # SBD or VOC train ids removed because they are VOC val ids
    labels: int  # PNGs in SegmentationClassAug/
    written: int  # files made by this run (the rest were already whole)


def build_aug(voc_root: Path, sbd_root: Path, workers: int | None = None) -> AugSummary:
    """SegmentationClassAug/ and train_aug.txt inside `voc_root` from SBD at `sbd_root`.

    Idempotent: outputs that are already whole are kept, partial or missing ones (re)made.
    """
    dataset = sbd_root / "dataset"
    sbd_train = _read_list(dataset / "train.txt")
    sbd_val = _read_list(dataset / "val.txt")
    voc_train = read_split(voc_root, "train")
    voc_val = read_split(voc_root, "val")
    mats = dataset / "cls"
    missing = [i for i in sbd_train + sbd_val if not (mats / f"{i}.mat").is_file()]
    if missing:
        raise DataError(
            f"SBD id {missing[0]!r} has no label {mats / (missing[0] + '.mat')} "
            f"({len(missing)} ids missing): extract SBD again"
        )
    voc_ids = set(voc_train) | set(voc_val)
    val_ids = set(voc_val)
    sbd_ids = sorted(set(sbd_train) | set(sbd_val) | {p.stem for p in mats.glob("*.mat")})
    pool = set(sbd_train) | set(sbd_val) | set(voc_train)
    train_aug = sorted(pool - val_ids)

    out = voc_root / AUG_LABEL_DIR
    out.mkdir(exist_ok=True)
    jobs = [(str(mats / f"{i}.mat"), str(out / f"{i}.png")) for i in sbd_ids if i not in voc_ids]
    for i in sorted(voc_ids):
        label = voc_root / VOC_LABEL_DIR / f"{i}.png"
        if not label.is_file():
            raise DataError(f"VOC id {i!r} has no label {label}: extract VOC 2012 again")
        jobs.append((str(label), str(out / f"{i}.png")))
    # Every SBD image is a VOC 2011 image, so VOC 2012 has it; copy it from SBD if not.
    images = voc_root / IMAGE_DIR
    for i in train_aug:
        if not (images / f"{i}.jpg").is_file():
            sbd_image = dataset / "img" / f"{i}.jpg"
            if not sbd_image.is_file():
                raise DataError(f"id {i!r} has no image in {images} nor {sbd_image}")
            jobs.append((str(sbd_image), str(images / f"{i}.jpg")))
    remove_stale_temps(out)
    remove_stale_temps(images)
    workers = workers or os.cpu_count() or 1
    written = run_jobs(sorted(jobs), workers, desc=AUG_LABEL_DIR)

    split_file = voc_root / SPLIT_DIR / f"{AUG_SPLIT}.txt"
    overlap = sorted(set(train_aug) & set(read_split(voc_root, "val")))
    if overlap:  # the point of train_aug: never train on a val image
        raise DataError(f"{split_file} would share {len(overlap)} ids with val.txt: {overlap[:3]}")
    write_text_atomic(split_file, "".join(f"{i}\n" for i in train_aug))
    return AugSummary(
        num_ids=len(train_aug),
        sbd_train=len(sbd_train),
        sbd_val=len(sbd_val),
        voc_train=len(voc_train),
        dropped_val=len(pool & val_ids),
        labels=len(set(sbd_ids) | voc_ids),
        written=written,
    )
