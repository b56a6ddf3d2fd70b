"""A job's result.json record: finished jobs are not run again, interrupted ones resume from
last.ckpt, and a re-run sweep or Optuna search completes where it stopped.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.cli_runs import SUMMARY, compose_train, ok, tiny
from helpers.jobs import one_thread, one_thread_env, pause, popen_cli, results, run_cli, wait_for

from fcn.core.errors import ConfigError
from fcn.jobs.job_record import RESULT_FILE, continue_job
from fcn.jobs.optuna_study import open_storage
from fcn.train import train


# ---- job records --------------------------------------------------------------------------------
def test_continue_job_skips_finished_resumes_last_and_refuses_another_job(tmp_path, monkeypatch):
    monkeypatch.setattr("fcn.jobs.job_record.job_overrides", lambda: ["head=fcn8s", "seed=1"])
    job = tmp_path / "job"
    assert continue_job(job, None) == (None, None)  # fresh
    (job / "checkpoints").mkdir(parents=True)
    (job / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert continue_job(job, None) == (str(job / "checkpoints" / "last.ckpt"), None)
    assert continue_job(job, "other.ckpt") == ("other.ckpt", None)  # explicit wins

    record = {"status": "finished", "overrides": ["seed=1", "head=fcn8s"], "value": 0.5}
    (job / RESULT_FILE).write_text(json.dumps(record))
    assert continue_job(job, None) == (None, record)
    record["overrides"] = ["head=fcn32s", "seed=1"]
    (job / RESULT_FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="holds the job head=fcn32s seed=1, not head=fcn8s"):
        continue_job(job, None)
    (job / RESULT_FILE).write_text("{")
    with pytest.raises(ConfigError, match="unreadable job record"):
        continue_job(job, None)


def test_finished_run_is_not_run_again_in_its_directory(tmp_path, data_dir, capsys):
    # A stray requeue of a job that finished: same directory, result.json says finished.
    cfg = compose_train(
        [*tiny(data_dir), "trainer.fast_dev_run=true", "test_after_fit=false"], tmp_path
    )
    with one_thread():
        first = train(cfg)
    record = json.loads((tmp_path / RESULT_FILE).read_text())
    assert record["status"] == "finished" and record["metrics"]["best_val_mIoU"] is None
    capsys.readouterr()
    again = train(compose_train([*tiny(data_dir), "trainer.fast_dev_run=true"], tmp_path))
    assert "finished before" in capsys.readouterr().out
    assert np.isnan(first) and np.isnan(again)


# ---- resumable sweeps (any launcher: the logic is in the job) ---------------------------------
@pytest.mark.slow
def test_rerun_sweep_skips_finished_resumes_interrupted_and_reports_seeds(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    # 8 images, batch 2: 4 steps; job 1 (seed=1 head=fcn8s) is stopped mid-epoch at step 2.
    args = [
        "-m",
        "seed=1,2,3",
        "head=fcn32s,fcn8s",
        *tiny(data_dir, num_train=8, batch_size=2),
        "test_after_fit=false",
        f"hydra.sweep.dir={sweep}",
    ]
    marker = tmp_path / "paused"
    proc = popen_cli([*args, *pause(marker, [2], job=1)], tmp_path)
    assert wait_for(Path(f"{marker}.2"), proc).startswith("1 ")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    before = results(sweep)
    assert sorted(r["status"] for r in before.values()) == ["finished", "interrupted"]

    out = ok(run_cli([*args, *pause(marker, [2], job=1)], tmp_path))
    assert out.count("finished before") == 1  # job 0
    assert out.count("continuing this job from") == 1  # job 1, from its mid-epoch last.ckpt
    assert len(SUMMARY.findall(out)) == 5  # jobs 1..5 ran; job 0 did not
    after = results(sweep)
    assert len(after) == 6 and all(r["status"] == "finished" for r in after.values())
    assert all(r["global_step"] == 4 for r in after.values())

    report = subprocess.run(
        [sys.executable, "-m", "fcn.report", str(sweep)],
        env=one_thread_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = re.findall(r"^\| (fcn\d+s) \| (\d) \| ([\d.]+) ± ([\d.]+) \|", report.stdout, re.M)
    assert len(rows) == 2, report.stdout + report.stderr
    for head, n, mean, std in rows:
        values = [r["value"] for r in after.values() if f"head={head}" in r["overrides"]]
        assert n == "3" and len(values) == 3
        assert float(mean) == pytest.approx(np.mean(values), abs=5e-5)
        assert float(std) == pytest.approx(np.std(values, ddof=1), abs=5e-5)
    assert float(rows[0][2]) >= float(rows[1][2])  # best first
    with (sweep / "report.csv").open() as f:
        for row in csv.DictReader(f):  # full precision; the last val loss differs by seed
            head = f"head={row['head']}"
            losses = [r["metrics"]["val/loss"] for r in after.values() if head in r["overrides"]]
            assert len(set(losses)) == 3
            assert float(row["val/loss_mean"]) == pytest.approx(np.mean(losses), rel=1e-12)
            assert float(row["val/loss_std"]) == pytest.approx(np.std(losses, ddof=1), rel=1e-9)


@pytest.mark.slow
def test_optuna_search_killed_after_two_trials_ends_with_four(tmp_path, data_dir):
    import optuna

    sweep = tmp_path / "search"
    searched = [a for a in tiny(data_dir) if not a.startswith("data.batch_size=")]
    args = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "test_after_fit=false",
        f"hydra.sweep.dir={sweep}",
        *searched,
    ]
    marker = tmp_path / "paused"
    proc = popen_cli([*args, *pause(marker, [1], job=2)], tmp_path)
    wait_for(Path(f"{marker}.1"), proc)
    proc.kill()  # no goodbye: trial 2 stays RUNNING in the study
    proc.communicate(timeout=60)
    storage = open_storage(f"{sweep}/optuna.journal")
    study = optuna.load_study(study_name="fcn_val_mIoU", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]

    out = ok(run_cli([*args, *pause(marker, [1], job=2)], tmp_path))
    assert len(SUMMARY.findall(out)) == 2  # trial 2 again (retried as trial 3), then trial 4
    study = optuna.load_study(study_name="fcn_val_mIoU", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[3].params == study.trials[2].params
    params = [tuple(sorted(t.params.items())) for t in study.trials if t.state.name == "COMPLETE"]
    assert len(set(params)) == 4  # the continued search does not repeat earlier draws
    assert len(results(sweep)) == 4  # trial 2 ran in its own job dir again
