"""fcn's own Trainer callbacks: a clean stop on Ctrl+C or SIGTERM that leaves last.ckpt, the
one-line note of a `debug=` preset, logging/validation fitted to a short run, and the EMA of
the weights (`callbacks=ema`).

Cluster jobs' signals (pre-emption, time limits) are `JobSignals` in fcn/jobs/signals.py, beside the
requeue they lead to; they stop through `request_graceful_stop` and end in InterruptCheckpoint.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException


def request_graceful_stop(trainer: L.Trainer) -> None:
    """Ask `fit` to stop at the next batch boundary, as SIGTERM does: Lightning's loops then
    raise SIGTERMException on every rank (rank 0's flag is broadcast each batch under DDP).

    Sets the flag Lightning's own SIGTERM handler sets, `trainer._signal_connector
    .received_sigterm`: private, and kept because no public way stops at the same point.
    `trainer.should_stop` runs a validation first and ends fit as finished (a pre-empted job
    would then test and report); raising SIGTERMException from a hook stops inside the hook,
    before that batch's validation, a different restart point from Lightning's. Pinned by
    test_graceful_stop_sets_signal_connector_received_sigterm.
    """
    trainer._signal_connector.received_sigterm = True


class InterruptCheckpoint(L.Callback):
    """SIGTERM (pre-emption, `kill`) or SIGINT (Ctrl+C) during fit: finish the current batch,
    write `<dirpath>/last.ckpt` (mid-epoch state included) and stop.

    Lightning already turns SIGTERM into a stop at the next batch boundary (SIGTERMException,
    on all ranks). SIGINT would raise KeyboardInterrupt anywhere, even halfway through an
    optimizer step, so the first Ctrl+C is routed through the same flag; a second one aborts.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.saved: Path | None = None
        self._previous_sigint: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _in_main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint(trainer))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()

    def _on_sigint(self, trainer: L.Trainer):
        def handler(signum, frame) -> None:
            if trainer.received_sigterm:  # second Ctrl+C: stop now, no checkpoint
                raise KeyboardInterrupt
            print("\nInterrupted: saving last.ckpt after this batch (Ctrl+C again to abort)")
            request_graceful_stop(trainer)

        return handler

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)  # all ranks call it; rank 0 writes
            self.saved = self.path

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and _in_main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class DebugPresetNote(L.Callback):
    """Prints `debug=<preset>: key=value, ...` once, when the Trainer first sets up.

    `changes` maps each key the preset sets to its value in this run (the preset file passes
    interpolations, so a later command-line override shows as what really runs).
    """

    def __init__(self, preset: str, changes: Mapping[str, Any]) -> None:
        self.preset = preset
        self.changes = dict(changes)
        self._said = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._said:
            self._said = True
            rank_zero_only(print)(self.line(), flush=True)

    def line(self) -> str:
        settings = ", ".join(f"{k}={_show(v)}" for k, v in self.changes.items())
        return f"debug={self.preset}: {settings}"


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, Mapping) and "_target_" in value:
        return str(value["_target_"]).rsplit(".", 1)[-1]
    return str(value)


class RunLengthFit(L.Callback):
    """Fits two Trainer settings to how long this run is, so a short run still logs and
    validates:

    - `log_every_n_steps` at most the batches of an epoch (a 2-batch run with the default 10
      would log no train loss, and Lightning warns about it);
    - a validation at the end of the last epoch when `check_val_every_n_epoch` would skip it
      (e.g. every 5 epochs, 1 epoch asked for): the run then has a score and a best checkpoint.
      Only where `max_epochs` ends the run (a `max_steps` end is not known ahead).
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        limit = trainer.limit_train_batches
        # Lightning shards the train loader over the ranks (its distributed sampler).
        batches = math.ceil(len(trainer.datamodule.train_dataloader()) / trainer.world_size)
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
        trainer.log_every_n_steps = max(1, min(trainer.log_every_n_steps, batches))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 == trainer.max_epochs
        if last and trainer.max_steps == -1 and trainer.check_val_every_n_epoch:
            trainer.check_val_every_n_epoch = 1


class WeightsEMA(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging (checkpoints hold the averaged weights as `state_dict`,
    the raw ones as `current_model_state`; resuming a fit restores both), except that loading a
    checkpoint outside fit keeps the averaged weights: Lightning's callback, still holding its
    average after fit, would load the raw ones into the model fcn-train then tests."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
