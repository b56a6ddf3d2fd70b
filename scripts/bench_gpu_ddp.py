"""DDP on every visible GPU for scripts/bench_gpu.py (section `ddp`), as the CPU test
(tests/test_scaleout.py) does with gloo: `fcn.train trainer=ddp` trains a few steps on all
GPUs (NCCL, SyncBatchNorm), then the same weights are validated by one GPU and by all of them;
the metrics must be equal (the loss up to summation order). `dry=True` without a GPU runs the
same steps on 2 CPU processes (gloo): a check of this file."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import log


def _tiny(cache: Path) -> list[str]:
    return [
        f"data.root={cache}",
        "data.synthetic.num_train=64",
        "data.synthetic.num_val=7",
        "data.crop_size=[128,128]",
        "data.batch_size=8",
        "data.num_workers=2",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ]


def _run(args: list[str], cwd: Path, end: float) -> str:
    """fcn.train with `args` in `cwd`, stopped at time.monotonic() == end."""
    cwd.mkdir(parents=True, exist_ok=True)
    timeout = max(end - time.monotonic(), 1.0)
    done = subprocess.run(
        [sys.executable, "-m", "fcn.train", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        env=None,
    )
    if done.returncode:
        raise RuntimeError(
            f"fcn.train {' '.join(args)} exited {done.returncode}: "
            f"{(done.stdout + done.stderr)[-1500:]}"
        )
    return done.stdout


def _test_metrics(cwd: Path) -> dict[str, float]:
    (metrics,) = (cwd / "outputs").glob("*/*/csv/metrics.csv")
    with metrics.open() as f:
        (row,) = [r for r in csv.DictReader(f) if r.get("test/mIoU")]
    return {k: float(v) for k, v in row.items() if k.startswith("test/") and v}


def bench_ddp(work: Path, seconds: float, dry: bool = False) -> dict[str, Any]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    accelerator = "gpu"
    if dry and count == 0:
        count, accelerator = 2, "cpu"
    if count < 2:
        return {"gpus": count, "skipped": {"all": f"DDP needs 2 or more GPUs; {count} visible"}}
    cache, end = work / "ddp_cache", time.monotonic() + seconds - 2
    ddp = ["trainer=ddp", f"trainer.devices={count}", f"trainer.accelerator={accelerator}"]
    out = _run(
        [
            *_tiny(cache),
            *ddp,
            "trainer.max_steps=4",
            "test_after_fit=false",
            # a tiny lr keeps the varied predictions of the initial weights: a model that predicts
            # one class everywhere would make equal metrics prove little
            "optimizer.lr=1e-6",
        ],
        work / "ddp_fit",
        end,
    )
    (ckpt,) = (work / "ddp_fit" / "outputs").glob("*/*/checkpoints/last.ckpt")
    same = [*_tiny(cache), f"init_from={ckpt}", "trainer.max_epochs=0", "logger=csv"]
    _run([*same, f"trainer.accelerator={accelerator}", "trainer.devices=1"], work / "one", end)
    _run([*same, *ddp], work / "all", end)
    one, every = _test_metrics(work / "one"), _test_metrics(work / "all")
    loss_one, loss_all = one.pop("test/loss"), every.pop("test/loss")
    classes_hit = sum(v > 0 for k, v in one.items() if k.startswith("test/IoU/"))
    equal = one == every and abs(loss_one - loss_all) <= 1e-5 * max(abs(loss_one), 1e-12)
    log(f"ddp on {count} {accelerator} devices: metrics equal to 1 device: {equal}")
    result = {
        "accelerator": accelerator,
        "gpus": count,
        "metrics_equal_to_one_gpu": equal,
        "one_gpu": one,
        "all_gpus": every,
        "loss": [loss_one, loss_all],
        "classes_with_iou_above_0": classes_hit,
        "fit_tail": out[-300:],
    }
    if not equal:
        raise AssertionError(f"DDP validation metrics differ from one GPU's: {result}")
    return result
