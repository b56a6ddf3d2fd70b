"""The real-data figure: `experiment=voc_mobilenet_cpu` on voc_mini, timed as a user runs it.

    python scripts/benchmark.py --only realdata      # about 12 minutes on 2 idle cores

Runs `python -m fcn.train experiment=voc_mobilenet_cpu data.root=<voc_mini>
backbone.weights_path=<MobileNetV2 features>` in a subprocess, so the wall time is the whole
command's (start-up, data checks, training, validation, the final test). One callback is added,
`EpochTimer`, which writes per-epoch train and validation seconds with the load average, and the
final test's per-class IoU, to a JSON file. Skips with a message where voc_mini or the weights
file is absent. The run's folder (checkpoints, TensorBoard, epoch_times.json) is temporary unless
FCN_BENCH_REALDATA_DIR names a new folder to keep it in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from bench_common import loadavg

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
DEFAULT_WEIGHTS = Path(
    os.environ.get(
        "FCN_MOBILENET_V2_WEIGHTS",
        REPO_ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet_features.pth",
    )
)
PRESET = "voc_mobilenet_cpu"
# --quick: the same command on a budget of a few batches (checks that it runs; numbers meaningless).
QUICK_OVERRIDES = (
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.batch_size=2",
    "data.crop_size=[64,64]",
    "data.num_workers=0",
)
_SUMMARY = re.compile(r"best val/mIoU=(\S+) checkpoint=(\S+) logs=(\S+)")


class EpochTimer(L.Callback):
    """Per-epoch train and validation seconds, images, val mIoU and load average, and the test
    scores, rewritten to `path` (JSON) after every epoch. Train seconds exclude validation,
    which Lightning runs inside the training epoch. `*_cpu_s` is this process's CPU time (all
    its threads, not the loader workers): unlike wall time, barely changed by other load."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.record: dict[str, Any] = {"epochs": [], "test": None}
        self._clock: dict[str, float] = {}
        self._val_s = self._val_cpu_s = 0.0
        self._images = 0

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=1))
        os.replace(tmp, self.path)  # never a half-written file

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._clock["epoch"] = time.perf_counter()
        self._clock["epoch_cpu"] = time.process_time()
        self._val_s, self._val_cpu_s, self._images = 0.0, 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += int(batch[0].shape[0])

    def on_validation_start(self, trainer, pl_module) -> None:
        self._clock["val"] = time.perf_counter()
        self._clock["val_cpu"] = time.process_time()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_s += time.perf_counter() - self._clock["val"]
            self._val_cpu_s += time.process_time() - self._clock["val_cpu"]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        total = time.perf_counter() - self._clock["epoch"]
        cpu = time.process_time() - self._clock["epoch_cpu"]
        miou = trainer.callback_metrics.get("val/mIoU") if self._val_s else None
        entry = {
            "epoch": trainer.current_epoch,
            "train_s": round(total - self._val_s, 2),
            "val_s": round(self._val_s, 2),
            "train_cpu_s": round(cpu - self._val_cpu_s, 2),
            "val_cpu_s": round(self._val_cpu_s, 2),
            "images": self._images,
            "val_mIoU": None if miou is None else round(float(miou), 4),
            "load": loadavg(),
        }
        self.record["epochs"].append(entry)
        self._write()
        print(f"[epoch timer] {json.dumps(entry)}", file=sys.stderr, flush=True)

    def on_test_start(self, trainer, pl_module) -> None:
        self._clock["test"] = time.perf_counter()

    def on_test_end(self, trainer, pl_module) -> None:
        scores = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
        self.record["test"] = {
            "test_s": round(time.perf_counter() - self._clock["test"], 2),
            "load": loadavg(),
            "mIoU": scores.get("test/mIoU"),
            "pixel_acc": scores.get("test/pixel_acc"),
            "per_class_iou": {
                k.removeprefix("test/IoU/"): v for k, v in scores.items() if "test/IoU/" in k
            },
        }
        self._write()


def command(
    voc_root: Path, weights: Path, run_dir: Path, quick: bool, extra: Sequence[str] = ()
) -> list[str]:
    """The user's command for the preset (plus `extra` overrides), the timing callback and a
    fixed run directory."""
    return [
        sys.executable,
        "-m",
        "fcn.train",
        f"experiment={PRESET}",
        f"data.root={voc_root}",
        f"backbone.weights_path={weights}",
        *extra,
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        "+callbacks.epoch_timer._target_=bench_realdata.EpochTimer",
        f"+callbacks.epoch_timer.path={run_dir / 'epoch_times.json'}",
        *(QUICK_OVERRIDES if quick else ()),
    ]


def measure(
    quick: bool,
    voc_root: Path,
    run_dir: Path,
    weights: Path = DEFAULT_WEIGHTS,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the preset once (with `extra` overrides); `realdata_*` keys, or `realdata_skipped`
    naming what is absent."""
    absent = [
        str(p)
        for p in (voc_root / "ImageSets" / "Segmentation" / "train.txt", weights)
        if not p.is_file()
    ]
    if absent:
        msg = f"realdata skipped: {', '.join(absent)} not found (set FCN_VOC_MINI / --voc-root "
        msg += "and FCN_MOBILENET_V2_WEIGHTS)"
        print(f"[benchmark] {msg}", file=sys.stderr, flush=True)
        return {"realdata_skipped": msg}
    run_dir = Path(os.environ.get("FCN_BENCH_REALDATA_DIR") or run_dir).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(f"error: FCN_BENCH_REALDATA_DIR={run_dir} is not empty: name a new folder")
    cmd = command(voc_root.resolve(), weights.resolve(), run_dir, quick, extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(SCRIPTS), env.get("PYTHONPATH", "")) if p
    )
    print(f"[benchmark] realdata: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    load_start = loadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = _SUMMARY.search(proc.stdout)
    if proc.returncode != 0 or summary is None:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"fcn.train failed ({proc.returncode}):\n{tail}")
    record = json.loads((run_dir / "epoch_times.json").read_text())
    epochs, test = record["epochs"], record["test"] or {}
    train_s = sum(e["train_s"] for e in epochs)
    val_runs = [e for e in epochs if e["val_s"] > 0]
    return {
        "realdata_command": " ".join(["python", *cmd[1 : 6 + len(extra)]]),
        "realdata_val_mIoU": float(summary.group(1)),
        "realdata_test_mIoU": test.get("mIoU"),
        "realdata_test_pixel_acc": test.get("pixel_acc"),
        "realdata_wall_s": wall,
        "realdata_train_s": train_s,
        "realdata_train_images_per_s": sum(e["images"] for e in epochs) / max(train_s, 1e-9),
        "realdata_val_s_per_run": (
            sum(e["val_s"] for e in val_runs) / len(val_runs) if val_runs else None
        ),
        "realdata_test_s": test.get("test_s"),
        "realdata_epochs": epochs,
        "realdata_per_class_iou": test.get("per_class_iou"),
        "realdata_load_start": load_start,
        "realdata_load_end": loadavg(),
        "realdata_note": "--quick: a few batches, numbers meaningless"
        if quick
        else f"experiment={PRESET} on {voc_root}; wall = the whole command, start-up included",
    }
