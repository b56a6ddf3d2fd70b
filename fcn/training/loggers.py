"""Experiment loggers: pictures to every logger that takes them, MLflow on a local SQLite
database shared by runs and sweeps, W&B offline unless asked otherwise, CSV history kept on
resume, the end-of-run record.

Lightning's logger classes are imported here without their packages (mlflow, wandb): those are
only needed once `logger=mlflow` / `logger=wandb` builds one.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from fcn.core.errors import ConfigError
from fcn.core.file_lock import exclusive

_SQLITE = "sqlite:///"
_IMAGE_LOGGERS = (TensorBoardLogger, LightningMLFlowLogger, WandbLogger)


# ---- pictures -------------------------------------------------------------------------------
def takes_images(loggers: Sequence[Logger]) -> bool:
    """Whether any of `loggers` stores pictures (CSV does not: skip drawing them)."""
    return any(isinstance(lg, _IMAGE_LOGGERS) for lg in loggers)


def log_image(loggers: Sequence[Logger], key: str, image: torch.Tensor, step: int) -> None:
    """A 3 x H x W uint8 picture under `key` at `step`, to each logger that takes pictures."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, step)
        elif isinstance(logger, LightningMLFlowLogger):
            # The time-stepped form: the MLflow UI shows it per step, like TensorBoard.
            logger.experiment.log_image(logger.run_id, _hwc(image), key=key, step=step)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key, [_hwc(image)], step=step)


def _hwc(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())


def figure_image(figure: Any) -> torch.Tensor:
    """A matplotlib figure drawn into a 3 x H x W uint8 picture (the figure is closed)."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    plt.close(figure)
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1)


# ---- MLflow ---------------------------------------------------------------------------------
class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLFlowLogger. With a local SQLite store (`sqlite:///<file>`), opening the
    database (which creates its tables the first time) and creating the experiment and the run
    happen under a file lock beside the database: sweep jobs that start together would
    otherwise race to create the same tables or experiment and fail."""

    def __init__(
        self,
        *args: Any,
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        **kwargs: Any,
    ) -> None:
        _require("mlflow", "logger=mlflow", "mlflow-skinny")
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self._lock_file = _sqlite_lock_file(self.tracking_uri)
        if artifact_location is None and self._lock_file is not None:
            artifact_location = str(self._lock_file.parent.absolute() / "mlartifacts")
        self._opened = False
        with _locked(self._lock_file):
            super().__init__(
                *args,
                tracking_uri=self.tracking_uri,
                artifact_location=artifact_location,
                **kwargs,
            )

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._opened:  # every logging call comes through here: lock only the first time
            return super().experiment
        # The run is created on first use: tag it with the Hydra job it belongs to.
        self.tags = {**hydra_run_tags(), **(self.tags or {})}
        with _locked(self._lock_file):
            client = super().experiment
        self._opened = True
        return client


def _sqlite_lock_file(tracking_uri: str | None) -> Path | None:
    if not tracking_uri or not tracking_uri.startswith(_SQLITE):
        return None
    database = Path(tracking_uri[len(_SQLITE) :])
    database.parent.mkdir(parents=True, exist_ok=True)
    return database.with_name(database.name + ".lock")


@contextmanager
def _locked(lock_file: Path | None) -> Iterator[None]:
    # POSIX; SQLite stores are for one machine (or a job's node) anyway
    if lock_file is None:
        yield
        return
    with exclusive(lock_file):
        yield


# ---- CSV ------------------------------------------------------------------------------------
class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger, but a run resumed in its directory appends to its metrics.csv.

    Lightning's writer deletes an existing metrics.csv when it opens ("Previous log files in
    this directory will be deleted"). Here the file is moved aside while the writer opens,
    then put back, and the writer is told its columns, so new rows are appended under the old
    header (Lightning rewrites the file with a wider header when new columns come).
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if getattr(self, "_history_kept", False):
            return super().experiment
        self._history_kept = True
        metrics = Path(self.log_dir) / "metrics.csv"
        aside = metrics.with_name(".metrics.csv.resuming")
        if metrics.is_file():
            metrics.replace(aside)  # a kill right here leaves it under `aside`: taken next time
        with warnings.catch_warnings():
            # About the file moved aside above, which is not deleted.
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists")
            writer = super().experiment
        if aside.is_file():
            with open(aside, newline="") as handle:
                columns = next(csv.reader(handle), [])
            aside.replace(metrics)
            # in the file's order: rows appended under that header must line up with it
            writer.metrics_keys = [*columns, *(k for k in writer.metrics_keys if k not in columns)]
        return writer


# ---- W&B ------------------------------------------------------------------------------------
def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """Lightning's WandbLogger, offline unless told otherwise: `offline=None` follows WANDB_MODE
    (offline when unset), `offline=false` syncs online.

    The mode goes to wandb.init as `mode`: Lightning's own `offline=True` would instead set
    WANDB_MODE for the whole process, leaking into every later run of a sweep.
    """
    _require("wandb", "logger=wandb", "wandb")
    if offline is None:
        mode = os.environ.get("WANDB_MODE", "offline")
    else:
        mode = "offline" if offline else "online"
    tags = hydra_run_tags()
    if "sweep_dir" in tags:  # a sweep's jobs as one group in the W&B UI
        kwargs.setdefault("group", tags["sweep_dir"])
    kwargs.setdefault("notes", tags.get("overrides"))
    logger = WandbLogger(mode=mode, **kwargs)
    # Lightning always hands wandb.init `anonymous` (None unless asked for), and wandb 0.31
    # prints "The anonymous setting has no effect" for any value: leave it out. Lightning keeps
    # wandb.init's arguments only in the private `_wandb_init` (pinned by the test
    # tests/test_tracking.py).
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
    return logger


def _require(module: str, choice: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{choice} needs the {package} package: pip install -e '.[tracking]' "
            f"(or pip install {package})"
        )


# ---- end of a run ---------------------------------------------------------------------------
@rank_zero_only
def log_run_end(
    loggers: Sequence[Logger], hparams: dict, final: dict, step: int, best_checkpoint: str
) -> None:
    """The run's hparams with its final scores, and the best checkpoint's path, to each logger;
    then close W&B's run (a sweep's next job in this process would otherwise log into it)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # hparams view: params with their results
            logger.log_hyperparams(hparams, final)
            if best_checkpoint:
                logger.experiment.add_text("best_checkpoint", best_checkpoint, step)
            continue
        # e.g. CSVLogger, MLflow, W&B: log_hyperparams takes no metrics
        logger.log_hyperparams(hparams)
        logger.log_metrics(final, step=step)
        if isinstance(logger, LightningMLFlowLogger) and best_checkpoint:
            logger.experiment.set_tag(logger.run_id, "best_checkpoint", best_checkpoint)
        elif isinstance(logger, WandbLogger):
            if best_checkpoint:
                logger.experiment.summary["best_checkpoint"] = best_checkpoint
            logger.experiment.finish()


def log_location(loggers: Sequence[Logger], default: str) -> str:
    """Where the first logger writes (a folder, or MLflow's tracking URI), for the summary line."""
    for logger in loggers:
        if isinstance(logger, LightningMLFlowLogger):
            return str(getattr(logger, "tracking_uri", None) or default)
        if isinstance(logger, WandbLogger) and logger.save_dir:
            return str(Path(logger.save_dir) / "wandb")
        if logger.log_dir:
            return str(logger.log_dir)
    return default


def hydra_run_tags() -> dict[str, str]:
    """What a tracking run is tagged with: the job's overrides and, in a sweep, the sweep
    directory and the job number ({} outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {"overrides": " ".join(hc.overrides.task)}
    if hc.mode == RunMode.MULTIRUN:
        tags.update(sweep_dir=str(hc.sweep.dir), job_num=str(hc.job.num))
    return tags
