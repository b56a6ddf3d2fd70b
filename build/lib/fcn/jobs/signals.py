"""Cluster jobs (SLURM, submitit): pre-emption and time limits end with a mid-epoch last.ckpt and
a requeue, instead of a lost run.

Who sends what:

- submitit (hydra/launcher=slurm|local) asks SLURM for `--signal=USR2@<signal_delay_s>` before the
  time limit; pre-emption tooling and `scancel --signal=USR2` send the same. submitit's own
  handler checkpoints the *call* (not the training state), requeues the job and exits at once,
  in the middle of a batch.
- SLURM sends SIGTERM on `scancel`, `scontrol requeue`, pre-emption with PreemptMode=REQUEUE,
  and at the time limit; it requeues the job itself in the requeue cases.
- Lightning's SLURMEnvironment asks for SIGUSR1 (its auto-requeue convention, plain sbatch).

`JobSignals` owns those three signals while `fit` runs in a cluster job: each one only asks
Lightning for a graceful stop (the flag its loops check at every batch boundary, broadcast from
rank 0 to all ranks). Then `InterruptCheckpoint` writes `checkpoints/last.ckpt` on every rank
(rank 0 writes) and `fcn.train` calls `requeue()`: for USR1/USR2, rank 0 hands over to
submitit's handler (its requeue, with its count of time-outs) or runs `scontrol requeue`; for
SIGTERM, SLURM requeues by itself or the job was cancelled. The requeued job resumes from that
last.ckpt (fcn/jobs/job_record.py). Outside `fit` the previous handlers run as before: nothing
is lost there. DataLoader workers ignore these signals (fcn/data/workers.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

import lightning as L

from fcn.training.callbacks import request_graceful_stop


def in_cluster_job() -> bool:
    """Inside a submitit job (SLURM or its local executor) or a SLURM allocation."""
    return "SUBMITIT_EXECUTOR" in os.environ or "SLURM_JOB_ID" in os.environ


def _requeue_signals() -> tuple[signal.Signals, ...]:
    # submitit's pre-emption signal can be changed with SUBMITIT_PREEMPT_SIGNAL (e.g. USR1)
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")
    submitit_signal = getattr(signal, name, signal.SIGUSR2)
    return tuple(dict.fromkeys((submitit_signal, signal.SIGUSR2, signal.SIGUSR1)))


class JobSignals(L.Callback):
    """Graceful stop on pre-emption/time-limit signals during `fit` in a cluster job.

    Use as a Trainer callback and, around `trainer.fit`, as a context manager (the previous
    handlers come back after fit, also on error). Outside a cluster job it does nothing.
    """

    def __init__(self, active: bool | None = None) -> None:
        self.active = in_cluster_job() if active is None else active
        self.received: signal.Signals | None = None
        self.requeue_signal: signal.Signals | None = None  # the USR signal, if one came
        self._trainer: L.Trainer | None = None
        self._previous: dict[int, Any] = {}  # the job's own handlers (submitit's), kept
        self._installed = False
        self._owner = os.getpid()

    # -- handlers -------------------------------------------------------------------------------
    def _signals(self) -> tuple[signal.Signals, ...]:
        return (signal.SIGTERM, *_requeue_signals())

    def _install(self) -> None:
        if not self.active or threading.current_thread() is not threading.main_thread():
            return
        for signum in self._signals():
            previous = signal.signal(signum, self._handle)
            if not self._installed:  # the job's own, not ours or Lightning's from in between
                self._previous[signum] = previous
        self._installed = True

    def _restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:  # a forked child before its worker_init ran
            return
        sig = signal.Signals(signum)
        first = self.received is None
        self.received = sig
        if sig != signal.SIGTERM:
            self.requeue_signal = sig
        if self._trainer is not None:
            request_graceful_stop(self._trainer)
        if first:  # os.write: print() can re-enter a buffered stream the main thread holds
            os.write(2, f"{sig.name}: stopping after this batch to save last.ckpt\n".encode())

    # -- Lightning hooks ------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trainer = trainer
        self._install()  # before Lightning's: it then leaves SIGUSR1 (auto-requeue) alone

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its SIGTERM handler in between (it broadcasts from inside the
        # handler, which can cross a gradient all-reduce); take SIGTERM back, keep the request.
        self._install()
        if self.received is not None:
            request_graceful_stop(trainer)

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> JobSignals:
        self._install()
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
        self._trainer = None

    # -- after fit ------------------------------------------------------------------------------
    def stop_pending(self, trainer: L.Trainer) -> bool:
        """A signal that came as fit was ending (no batch boundary left): stop anyway. Rank 0
        decides for all ranks (a collective only in cluster jobs, where every rank calls it)."""
        if not self.active:
            return False
        return bool(trainer.strategy.broadcast(self.received is not None, src=0))

    def requeue(self, is_global_zero: bool) -> str:
        """After last.ckpt is written: requeue the job if a USR signal asked for it (rank 0).

        submitit's handler requeues (counting time-outs against max_num_timeout) and exits the
        process; outside submitit, `scontrol requeue` as Lightning's auto-requeue would.
        Returns what happened, for the exit message.
        """
        signum = self.requeue_signal
        if signum is None:
            return ""
        if not is_global_zero:
            return "rank 0 requeues the job"
        job_handler = self._previous.get(signum)
        if callable(job_handler):  # submitit's: requeue the call, count time-outs, exit
            self._restore()
            print(f"requeueing: handing {signum.name} to the job's handler", flush=True)
            job_handler(signum, None)  # submitit exits here (or raises: no time-outs left)
            return "handed to the job's handler"
        job = slurm_job_id()
        if job is None:
            return "not requeued (no SLURM job id)"
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if done.returncode != 0:
            return f"scontrol requeue {job} failed: {done.stderr.strip()}"
        return f"requeued SLURM job {job}"


def slurm_job_id() -> str | None:
    """This job's id for scontrol (array jobs: <array id>_<task id>)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")
