"""Optuna search tests: the sweeper as this checkout has it, and a worker that stops mid-trial.

An editable install maps `hydra_plugins.fcn_optuna_sweeper` to the checkout it was installed
from; a test run from another checkout (a worktree) puts a link to its own sweeper first on the
path, so the CLI runs the code under test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

import lightning as L
import pytest

REPO = Path(__file__).resolve().parents[2]
SWEEPER = REPO / "fcn" / "jobs" / "optuna_sweeper"


def sweeper_path(tmp: Path) -> str | None:
    """A path entry under which `hydra_plugins.fcn_optuna_sweeper` is this checkout's, or None
    when the installed one already is."""
    spec = importlib.util.find_spec("hydra_plugins.fcn_optuna_sweeper")
    if spec and spec.origin and Path(spec.origin).resolve().parent == SWEEPER.resolve():
        return None
    link = tmp / "plugin_path" / "hydra_plugins" / "fcn_optuna_sweeper"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(SWEEPER)
    return str(tmp / "plugin_path")


class StallAtStep(L.Callback):
    """Loaded by the CLI from tests/: in sweep job `job` at global step `step`, write this
    process's pid to `marker` once, then wait (for the test's kill -9)."""

    def __init__(self, step: int, marker: str, job: int) -> None:
        self.step, self.marker, self.job = step, marker, job

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from hydra.core.hydra_config import HydraConfig

        marker = Path(self.marker)
        if HydraConfig.get().job.num != self.job or trainer.global_step != self.step:
            return
        if marker.exists():  # the retried trial runs on
            return
        marker.write_text(str(os.getpid()))
        time.sleep(300)


def release_requeued(job: str, timeout: float = 120) -> None:
    """A requeued job waits 2 minutes (SLURM's BeginTime); start it soon."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True
        ).stdout.strip()
        if state.startswith("PENDING"):
            # Started at once, slurmd may still be revoking the old run's credential and kills
            # the new one ("Job credential revoked"): give it a moment.
            time.sleep(3)
            subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
            return
        time.sleep(0.2)
    pytest.fail(f"job {job} was not requeued (squeue: {state!r})")


def array_task(job_id: str) -> str:
    """`<array job>_<task>` for one task of a submitit job array: a signal to the array's
    own id (which SLURM gives to one of its tasks as SLURM_JOB_ID) reaches every task."""
    shown = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    for line in shown.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobId") == job_id and "ArrayTaskId" in fields:
            return f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
    return job_id
