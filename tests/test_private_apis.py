"""The private Lightning internals fcn still relies on, one test each, named after the internal
(README, "Private APIs"): an upgrade that changes one fails here, by name, not in a user's run.

The others are pinned where they are used: torch.fx's `backed_size_oblivious`
(tests/test_export.py), Optuna's `Study._storage` (tests/test_optuna_search.py) and the W&B
logger's `_wandb_init` (tests/test_tracking.py). What has a public equivalent now uses it; the
scheduler's length is checked against Lightning's public estimate here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf, open_dict

from fcn.jobs.distributed import install_hydra_ddp_launcher
from fcn.training.callbacks import request_graceful_stop
from fcn.training.optim import scheduled_steps

CONF = Path(__file__).resolve().parents[1] / "conf"


def _trainer(**kw) -> L.Trainer:
    kw = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, **kw}
    return L.Trainer(accelerator="cpu", enable_model_summary=False, **kw)


# ---- trainer._signal_connector.received_sigterm ----------------------------------------------
class _StopAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            request_graceful_stop(trainer)


def test_graceful_stop_sets_signal_connector_received_sigterm():
    """The flag Lightning's SIGTERM handler sets: its public reading is `received_sigterm`, and
    its training loop then stops at that batch's end with SIGTERMException (what
    InterruptCheckpoint and fcn.train's exit handle)."""
    trainer = _trainer(max_epochs=1, limit_val_batches=0, callbacks=[_StopAtStep(2)])
    with pytest.raises(SIGTERMException):
        trainer.fit(BoringModel(), datamodule=BoringDataModule())
    assert trainer._signal_connector.received_sigterm and trainer.received_sigterm
    assert trainer.global_step == 2 and trainer.interrupted


# ---- lightning's subprocess_script._hydra_subprocess_cmd ---------------------------------------
@pytest.fixture
def hydra_job(tmp_path, monkeypatch):
    """HydraConfig set up as inside `fcn.train` for a job in tmp_path (config saved there)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.runtime.cwd = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(job, tmp_path / ".hydra" / "config.yaml")
    # The launcher writes MASTER_ADDR & co. into os.environ: give it a copy to write into.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    yield job
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("package", ["fabric", "pytorch"])
def test_ddp_launcher_replaces_hydra_subprocess_cmd(package, hydra_job, tmp_path, monkeypatch):
    """Both Lightning launchers start rank 1 with fcn's command (this job's saved config, no
    `-m`), through the module-level `_hydra_subprocess_cmd` that fcn.jobs.distributed replaces."""
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as pl_launcher

    module = {"fabric": fabric_launcher, "pytorch": pl_launcher}[package]
    for launcher_module in (fabric_launcher, pl_launcher):  # fcn patches both; undo afterwards
        monkeypatch.setattr(launcher_module, "_hydra_subprocess_cmd", None)
    install_hydra_ddp_launcher(hydra_job)
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: started.append((command, kw)))
    module._SubprocessScriptLauncher(LightningEnvironment(), 2, 1)._call_children_scripts()

    ((command, kw),) = started
    assert command[:3] == [sys.executable, "-m", "fcn.train"]
    assert command[3:7] == ["--config-path", str(tmp_path / ".hydra"), "--config-name", "config"]
    assert "-m" not in command[3:] and kw["cwd"] == str(tmp_path)  # no sweep in a rank
    assert kw["env"]["LOCAL_RANK"] == "1"


# ---- scheduler length: public rules instead of an early train-loader load ----------------------
class _RecordSteps(BoringModel):
    def configure_optimizers(self):
        batches = len(self.trainer.datamodule.train_dataloader())
        ours = scheduled_steps(self.trainer, batches)
        raise _Recorded(ours, self.trainer.estimated_stepping_batches)


class _Recorded(Exception):
    pass


@pytest.mark.parametrize(
    "flags",
    [
        {"max_epochs": 3},
        {"max_epochs": 2, "limit_train_batches": 5},
        {"max_epochs": 2, "limit_train_batches": 0.25},
        {"max_epochs": 2, "accumulate_grad_batches": 3},
        {"max_epochs": 4, "max_steps": 7},
        {"max_epochs": 2, "overfit_batches": 2},
        {"fast_dev_run": 2},
        {"max_epochs": -1, "max_steps": 11},
    ],
)
def test_scheduled_steps_equal_estimated_stepping_batches(flags):
    with pytest.raises(_Recorded) as recorded:
        _trainer(**flags).fit(_RecordSteps(), datamodule=BoringDataModule())
    ours, lightning = recorded.value.args
    assert ours == lightning
