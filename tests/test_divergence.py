"""A diverging run stops at the bad step with one line, and never saves non-finite weights over its
checkpoints.
"""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
from helpers.processes import Main, one_error_line, sha256, tiny_train
from helpers.trained import NUM_CLASSES

from fcn.core.errors import DivergenceError
from fcn.data import VOCDataModule
from fcn.training.module import SegmentationModule


# ---- a diverging run ---------------------------------------------------------------------------
@pytest.mark.slow
def test_diverging_run_stops_with_one_line_and_keeps_its_checkpoints(tmp_path, tiny_voc, env):
    # From epoch 1 on the lr is 0.05 * 1e12: the weights blow up within two steps.
    diverging = [*tiny_train(tiny_voc), "scheduler=step", "scheduler.milestones=[1]"]
    diverging.append("scheduler.gamma=1e12")
    run = tmp_path / "run"
    first = Main("fcn.train", [*diverging, f"hydra.run.dir={run}"], tmp_path, **env).wait()
    assert first.code == 0, first.err[-3000:]
    checkpoints = run / "checkpoints"
    before = {p.name: sha256(p) for p in checkpoints.iterdir()}
    assert "last.ckpt" in before and len(before) == 2  # last and best

    more = [*diverging, "trainer.max_epochs=4", f"resume={run}", f"hydra.run.dir={tmp_path / 'r2'}"]
    second = Main("fcn.train", more, tmp_path, **env).wait()
    line = one_error_line(second.err)
    assert second.code == 2
    match = re.fullmatch(
        r"error: loss is nan at step (\d+) \(lr=5e\+10\): lower optimizer\.lr .*", line
    )
    assert match and 2 < int(match.group(1)) <= 4, line  # stopped in its first epoch
    assert {p.name: sha256(p) for p in checkpoints.iterdir()} == before
    assert "best val/mIoU" not in second.out


class _PoisonWeights(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        with torch.no_grad():
            next(pl_module.parameters()).fill_(float("inf"))


def test_non_finite_weights_are_never_saved(tmp_path, tiny_datamodule: VOCDataModule):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = SegmentationModule("resnet18", "fcn32s", NUM_CLASSES)
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[_PoisonWeights(), ModelCheckpoint(tmp_path, "last", every_n_train_steps=1)],
    )
    with pytest.raises(DivergenceError, match="weights are not finite at step 1"):
        trainer.fit(module, datamodule=tiny_datamodule)
    assert list(tmp_path.iterdir()) == []
