"""A training job around `fit`: where it runs (a resumed run continues in its own directory,
every rank with the same config) and how an interrupted `fit` ends (recorded in result.json,
requeued on a cluster, exit status 128 + SIGTERM)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from fcn.jobs.distributed import (
    check_same_config,
    install_hydra_ddp_launcher,
    sync_batchnorm_supported,
)
from fcn.jobs.job_record import JobRecord
from fcn.jobs.signals import JobSignals
from fcn.training.callbacks import InterruptCheckpoint
from fcn.training.precision import resolve_precision

say = rank_zero_only(print)


def prepare_job(cfg: DictConfig, ckpt_path: str | None) -> None:
    """Where the job runs and the config decisions that must be the same on every rank (launched
    ranks rerun this on their config)."""
    run_dir = owning_run_dir(ckpt_path)
    if run_dir is not None:
        # Resume in place: checkpoints, TensorBoard curves and best-k bookkeeping continue in the
        # run that made the checkpoint (this invocation's own Hydra dir only keeps its config).
        cfg.paths.output_dir = str(run_dir)
    if cfg.trainer.get("sync_batchnorm") and not sync_batchnorm_supported(cfg.trainer.accelerator):
        say("note: trainer.sync_batchnorm needs a GPU (SyncBatchNorm rejects CPU tensors); off")
        cfg.trainer.sync_batchnorm = False
    # Before the config digest below: every rank resolves `auto` alike and compares the result.
    precision = resolve_precision(cfg.trainer)
    t = cfg.trainer
    say(f"start: accelerator={t.accelerator} devices={t.devices} {precision}")
    if HydraConfig.initialized():
        check_same_config(cfg)
        install_hydra_ddp_launcher(cfg)


def owning_run_dir(ckpt_path: str | None) -> Path | None:
    """`<run>` for a checkpoint at `<run>/checkpoints/*.ckpt` (where fcn.train puts them)."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).absolute()
    run = path.parent.parent
    return run if path.parent.name == "checkpoints" else None


def exit_interrupted(
    trainer: L.Trainer,
    interrupt: InterruptCheckpoint,
    cfg: DictConfig,
    signals: JobSignals,
    record: JobRecord,
) -> None:
    """A stop during fit: last.ckpt is written; record it, requeue a cluster job or say how to
    resume, exit 128+SIGTERM."""
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    saved = interrupt.saved or (last if last.is_file() else "none")
    record.interrupt(global_step=trainer.global_step, checkpoint=str(saved))
    if trainer.is_global_zero:
        requeued = " (a requeued job continues from it by itself)" if signals.active else ""
        print(
            f"interrupted at step {trainer.global_step}: saved {saved}; "
            f"continue with resume={cfg.paths.output_dir}{requeued}",
            flush=True,
        )
    if signals.active:
        note = signals.requeue(trainer.is_global_zero)  # submitit's requeue exits in there
        if note and trainer.is_global_zero:
            print(note, flush=True)
    sys.exit(128 + signal.SIGTERM)
