"""Resumable jobs: every run leaves `<run dir>/result.json`; a job started again in the same
directory (a sweep command re-run with `hydra.sweep.dir=<sweep>`, a requeued SLURM job) is
skipped when it finished and resumes from `checkpoints/last.ckpt` when it did not.

A job is identified by its run directory (Hydra's job output dir), not by its number: the
record holds the job's overrides, and a directory that holds a different job is refused.

result.json (rank 0 writes it, atomically):
    {"status": "running" | "interrupted" | "failed" | "finished" | "pruned",
     "overrides": [...], "value": best val mIoU or null,
     "metrics": {"best_val_mIoU", the last validation's val/*, the test pass's test/*},
     (pruned: an Optuna search stopped the trial; value is its last val/mIoU, and a re-run
     skips it as it skips a finished job)
     "global_step": N, "checkpoint": ..., "error": ..., "config": {...}, "updated": ISO time}
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from fcn.core.atomic import write_text_atomic
from fcn.core.errors import ConfigError

RESULT_FILE = "result.json"
DONE = ("finished", "pruned")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def job_overrides() -> list[str]:
    """This job's task overrides (the sweep point plus the command line's), [] outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{path}: unreadable job record ({err}); delete it to rerun the job"
        ) from None
    if not isinstance(record, dict) or "status" not in record:
        raise ConfigError(f"{path}: not a job record (no status); delete it to rerun the job")
    return record


def continue_job(run_dir: str | Path, ckpt_path: str | None) -> tuple[str | None, dict | None]:
    """How this job starts: (checkpoint to resume from, finished record to return instead).

    An explicit ckpt_path/resume wins. Otherwise a finished record means "done, skip"; a
    last.ckpt means "resume" (a requeued or re-run job never starts over its own checkpoints).
    """
    if ckpt_path:
        return ckpt_path, None
    run_dir = Path(run_dir)
    record = read_result(run_dir)
    if record is not None and not _launched_rank():
        _check_same_job(run_dir, record)
    if record is not None and record["status"] in DONE:
        return None, record
    last = run_dir / LAST_CHECKPOINT
    return (str(last), None) if last.is_file() else (None, None)


def start_job(run_dir: str | Path, ckpt_path: str | None) -> tuple[str | None, float | None]:
    """`continue_job`, said in one line: (checkpoint to resume from, value of a finished job)."""
    resume_from, finished = continue_job(run_dir, ckpt_path)
    if finished is not None:
        value = stored_value(finished)
        _say(
            f"{run_dir}: {finished['status']} before (val/mIoU={value:.4f}), not run again "
            "(delete its result.json to rerun it)"
        )
        return None, value
    if resume_from and not ckpt_path:
        _say(f"continuing this job from {resume_from}")
    return resume_from, None


_say = rank_zero_only(print)


def _launched_rank() -> bool:
    # Ranks Lightning starts rerun the job's saved config without its overrides
    # (fcn/jobs/distributed.py); rank 0 has checked the directory for them.
    from fcn.jobs.distributed import launched_by_rank_zero

    return launched_by_rank_zero()


def _check_same_job(run_dir: Path, record: dict) -> None:
    stored, current = sorted(record.get("overrides", [])), sorted(job_overrides())
    if stored != current:
        raise ConfigError(
            f"{run_dir / RESULT_FILE}: this directory holds the job {' '.join(stored) or '(none)'}"
            f", not {' '.join(current) or '(none)'}; use a new hydra.sweep.dir (or the same "
            "sweep command as before)"
        )


def last_val_metrics(trainer: Any) -> dict[str, float]:
    """The last validation's split metrics (val/mIoU, val/loss, ...; no per-class IoU)."""
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith("val/") and k.count("/") == 1
    }


def stored_value(record: dict) -> float:
    value = record.get("value")
    return float("nan") if value is None else float(value)


class JobRecord:
    """Writes result.json through the life of one job (rank 0 only; other ranks do nothing)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.path = Path(cfg.paths.output_dir) / RESULT_FILE
        # A job continued with resume=<its dir> stays the job its sweep knows (its overrides).
        earlier = read_result(self.path.parent) if rank_zero_only.rank == 0 else None
        self.record: dict[str, Any] = {
            "status": "running",
            "overrides": (earlier or {}).get("overrides", job_overrides()),
            "job_dir": str(Path(cfg.paths.output_dir).absolute()),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "config": _plain_config(cfg),
        }

    def start(self) -> None:
        self._write(status="running", started=_now())

    def finish(self, value: float, metrics: dict[str, float], **fields: Any) -> None:
        self._write(status="finished", value=_number(value), metrics=_numbers(metrics), **fields)

    def prune(self, value: float | None, metrics: dict[str, float], **fields: Any) -> None:
        value = float("nan") if value is None else value
        self._write(status="pruned", value=_number(value), metrics=_numbers(metrics), **fields)

    def interrupt(self, **fields: Any) -> None:
        self._write(status="interrupted", **fields)

    def fail(self, error: BaseException) -> None:
        self._write(status="failed", error=f"{type(error).__name__}: {error}".splitlines()[0])

    def __enter__(self) -> JobRecord:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and isinstance(exc, Exception):  # SystemExit: interrupted, recorded
            self.fail(exc)

    @rank_zero_only
    def _write(self, **fields: Any) -> None:
        self.record.update(fields, updated=_now())
        write_text_atomic(self.path, json.dumps(self.record, indent=1, default=str) + "\n")


def _plain_config(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} outside a Hydra job: keep the interpolations
        return OmegaConf.to_container(cfg, resolve=False)


def _number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {k: _number(v) for k, v in metrics.items()}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
