"""A Trainer callback for tests/test_gpu.py: says how many SyncBatchNorm layers the model being
fit has (rank 0 prints `SyncBatchNorm layers: N` once fit starts, after Lightning's conversion)."""

from __future__ import annotations

import lightning as L
import torch


class SyncBatchNormProbe(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules())
        if trainer.is_global_zero:
            print(f"SyncBatchNorm layers: {count}", flush=True)
