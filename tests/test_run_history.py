"""A run never loses what it wrote: a resumed `logger=csv` run appends to metrics.csv; last.ckpt
is written after every training epoch whatever the validation interval, and resumes; a run
without a validation still names a checkpoint. Each run here is checked for warning lines
under `python -W error` (any warning not silenced on purpose would stop it)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from helpers.user_commands import SUMMARY, cli_env, run, tiny_train, warning_lines

pytestmark = pytest.mark.slow  # each test runs fcn.train two or three times (~10 s each)


def train(cwd: Path, *overrides: str) -> tuple[str, str]:
    """`python -W error -m fcn.train ...` in `cwd`: (best val mIoU, checkpoint) of its summary."""
    argv = ["python", "-W", "error", "-m", "fcn.train", *tiny_train(), *overrides]
    result = run(argv, cwd, cli_env(cwd / "cache"))
    assert not warning_lines(result), warning_lines(result)
    summary = SUMMARY.findall(result.stdout)
    assert len(summary) == 1, result.stdout[-2000:]
    assert result.stdout.rstrip().splitlines()[-1].startswith("best val/mIoU=")  # the last line
    return summary[0][:2]


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_resumed_csv_run_appends_to_its_metrics(tmp_path):
    run_dir = tmp_path / "run"
    train(tmp_path, "logger=csv", f"hydra.run.dir={run_dir}")
    first = metrics_rows(run_dir)
    assert {r["epoch"] for r in first if r["train/loss_step"]} == {"0"}  # train loss is logged
    train(tmp_path, "logger=csv", "trainer.max_epochs=2", f"resume={run_dir}")
    rows = metrics_rows(run_dir)
    assert rows[: len(first)] == [{k: r.get(k, "") for k in rows[0]} for r in first]
    assert {r["epoch"] for r in rows if r["train/loss_step"]} == {"0", "1"}
    assert {r["epoch"] for r in rows if r["val/mIoU"]} == {"0", "1"}
    assert not list((run_dir / "csv").glob(".*"))  # nothing left aside


def test_last_ckpt_every_epoch_whatever_the_validation_interval_and_it_resumes(tmp_path):
    run_dir = tmp_path / "run"
    every_5 = ["trainer.check_val_every_n_epoch=5", "trainer.max_epochs=2"]
    best, checkpoint = train(tmp_path, *every_5, f"hydra.run.dir={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4  # 2 epochs of 2 steps
    # The last epoch is validated even off the interval: a score and a best checkpoint.
    assert not math.isnan(float(best)) and Path(checkpoint).is_file()
    train(tmp_path, *every_5, "trainer.max_epochs=3", f"resume={run_dir}")
    assert torch.load(last, weights_only=True)["global_step"] == 6
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "finished" and record["global_step"] == 6


def test_a_run_without_validation_names_its_last_checkpoint(tmp_path):
    # Ends by steps before the first validation (every 5 epochs): nothing scored.
    run_dir = tmp_path / "run"
    no_val = ["trainer.max_epochs=-1", "trainer.max_steps=2", "trainer.check_val_every_n_epoch=5"]
    best, checkpoint = train(tmp_path, *no_val, f"hydra.run.dir={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    assert best == "nan" and checkpoint == str(last) and last.is_file()
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "finished" and record["checkpoint"] == str(last)
