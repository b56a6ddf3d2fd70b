"""Optuna pruning inside a search trial: each validation's `val/mIoU` is reported to the
trial; when the pruner says stop, every rank stops at the end of that validation (rank 0
decides, the decision is broadcast), after ModelCheckpoint has written last.ckpt.

optuna-integration's PyTorchLightningPruningCallback raises TrialPruned from the hook, which
ends fit as failed and, under DDP, needs rank-0-only storage tricks; stopping the fit through
`trainer.should_stop` keeps the run a normal one whose record says `pruned`.
"""

from __future__ import annotations

from typing import Any

import lightning as L

MONITOR = "val/mIoU"


class TrialPruning(L.Callback):
    def __init__(self, trial: Any, monitor: str = MONITOR) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned = False
        self.last_value: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        prune = False
        if trainer.is_global_zero:
            self.last_value = float(trainer.callback_metrics[self.monitor])
            self.trial.report(self.last_value, step=trainer.current_epoch)
            prune = bool(self.trial.should_prune())
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune and not self.pruned:
            self.pruned = True
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.trial.set_user_attr("pruned_at_epoch", trainer.current_epoch)
                print(
                    f"pruned: trial {self.trial.number} at epoch {trainer.current_epoch} "
                    f"({self.monitor}={self.last_value:.4f})",
                    flush=True,
                )
