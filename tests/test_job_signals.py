"""Cluster runs: pre-emption/time-limit signals, requeued jobs, resumable sweeps, the report.

Tests marked `slurm` submit to a real SLURM (bring one up on this machine with
`bash scripts/slurm_local.sh`, as root); they skip when `sbatch` is absent or the cluster does not
answer. Nothing here needs SLURM's accounting database (sacct).
"""

from __future__ import annotations

import os
import signal
import time

import lightning as L
import torch
from helpers.cli_runs import CONF
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, Dataset

from fcn.data.workers import worker_init
from fcn.jobs.signals import JobSignals


# ---- signals ------------------------------------------------------------------------------------
class _Squares(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)]
        default = signal.getsignal(signal.SIGCONT) == signal.SIG_DFL
        return torch.tensor([h == signal.SIG_IGN for h in handlers] + [default])


def test_dataloader_workers_ignore_job_signals():
    # The parent's handlers (submitit's, ours) are inherited at fork; workers must not run them.
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)
    previous_cont = signal.signal(signal.SIGCONT, lambda *_: None)
    try:
        loader = DataLoader(_Squares(), batch_size=2, num_workers=1, worker_init_fn=worker_init)
        (ignored,) = list(loader)
    finally:
        signal.signal(signal.SIGUSR2, previous)
        signal.signal(signal.SIGCONT, previous_cont)
    assert ignored.all()


def test_job_signals_use_signal_connector_received_sigterm():
    """USR2 during fit only sets the flag Lightning's loops check (its private signal
    connector's `received_sigterm`); after the checkpoint, rank 0 hands USR2 to the job's own
    handler (submitit's requeue). SIGTERM alone asks for no requeue (SLURM requeues itself)."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        signals = JobSignals(active=True)
        with signals:
            signals.on_fit_start(trainer, None)
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
            assert trainer.received_sigterm and trainer._signal_connector.received_sigterm
            assert calls == []  # the job's handler does not run mid-batch
        assert signal.getsignal(signal.SIGUSR2) is not signals._handle  # given back
        assert signals.requeue(is_global_zero=False) == "rank 0 requeues the job" and not calls
        signals.requeue(is_global_zero=True)
        assert calls == [signal.SIGUSR2]

        term = JobSignals(active=True)
        with term:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert term.received == signal.SIGTERM and term.requeue(True) == ""
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not JobSignals(active=False).stop_pending(trainer)  # no collective outside clusters


def test_cluster_defaults_compose():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        slurm = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True)
        search = compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    assert slurm.hydra.launcher.max_num_timeout == 20  # long runs cross time limits
    assert slurm.hydra.launcher.signal_delay_s == 120
    assert search.hydra.sweeper._target_.endswith("AsyncOptunaSweeper")
    assert search.hydra.sweeper.storage == f"{search.hydra.sweep.dir}/optuna.journal"
