"""Running cluster-style jobs in tests: a callback that pauses training at given steps (so a test
can signal a job mid-epoch), subprocess helpers, and sweep results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import pytest
import torch

from fcn.jobs.job_record import RESULT_FILE
from helpers.cli_runs import cli_env

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",  # CPU-only cluster: no GRES
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=null",
    # long enough that submitit counts an early USR2 as pre-emption, not a time-out
    "hydra.launcher.timeout_min=60",
]


class PauseAtSteps(L.Callback):
    """Test helper (loaded by the CLI from tests/): at each global step in `steps` (of sweep job
    number `job`, if given), write `<marker>.<step>` ("<batch_idx> <SLURM job id>") once and wait
    for the signal the test sends, so it lands at a known point mid-epoch."""

    def __init__(self, steps: list[int], marker: str, job: int | None = None) -> None:
        self.steps, self.marker, self.job = list(steps), marker, job

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from hydra.core.hydra_config import HydraConfig

        if self.job is not None and HydraConfig.get().job.num != self.job:
            return
        marker = Path(f"{self.marker}.{trainer.global_step}")
        if trainer.global_step in self.steps and not marker.exists():
            marker.write_text(f"{batch_idx} {os.environ.get('SLURM_JOB_ID', '')}")
            deadline = time.monotonic() + 180
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


def pause(marker: Path, steps: list[int], job: int | None = None) -> list[str]:
    args = [
        "+callbacks.pause._target_=helpers.jobs.PauseAtSteps",
        f"+callbacks.pause.steps=[{','.join(map(str, steps))}]",
        f"+callbacks.pause.marker={marker}",
    ]
    return args + ([f"+callbacks.pause.job={job}"] if job is not None else [])


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not path.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{path.name} never appeared:\n{out[-2000:]}\n{err[-3000:]}")
    time.sleep(0.2)  # the marker's text is written right after it is created
    return path.read_text()


def one_thread_env() -> dict[str, str]:
    # Tiny models: one thread is as fast, and far faster on a busy machine (no OpenMP
    # spinning). SLURM jobs inherit it from the submitting process.
    return {**cli_env(), "OMP_NUM_THREADS": "1"}


@contextmanager
def one_thread() -> Iterator[None]:
    """In-process reference runs with the thread count of the jobs they are compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def popen_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "fcn.train", *args],
        cwd=cwd,
        env=one_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = popen_cli(args, cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def results(sweep: Path) -> dict[str, dict]:
    """Job records by their sweep overrides (job dirs are found, not named)."""
    found = {}
    for path in sweep.rglob(RESULT_FILE):
        record = json.loads(path.read_text())
        found[" ".join(sorted(record["overrides"]))] = {**record, "dir": path.parent}
    return found
