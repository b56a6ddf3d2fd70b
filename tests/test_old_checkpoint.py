"""A checkpoint written before the package was split into subpackages (tests/fixtures/README.md)
still loads to the same logits, resumes training and exports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.cli_runs import TINY_SYNTHETIC, compose_train
from helpers.old_checkpoint import rebuild_old_checkpoint
from helpers.trained import export_cfg

from fcn.deploy.model_files import load_model, rebuild_module
from fcn.export import export
from fcn.train import train

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The overrides it was trained with (one step of a 2-step epoch: it holds a mid-epoch state).
ITS_RUN = [
    "backbone=mobilenet_v2",
    "head=fcn8s",
    "optimizer.momentum=0",
    *TINY_SYNTHETIC,
    "trainer.limit_val_batches=1",
    "logger=none",
    "test_after_fit=false",
]


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return rebuild_old_checkpoint(tmp_path / "old.ckpt")


def test_old_checkpoint_gives_the_logits_it_gave_when_written(old: Path):
    stored = torch.load(FIXTURES / "pre_layout_mobilenet_v2_fcn8s_logits.pt", weights_only=True)
    images = torch.randn(*stored["input_shape"], generator=torch.Generator().manual_seed(0))
    module = rebuild_module(old)
    assert module.hparams.backbone == "mobilenet_v2" and module.hparams.num_classes == 6
    with torch.no_grad():
        logits = module.model(images)
    torch.testing.assert_close(logits, stored["logits"], atol=1e-6, rtol=1e-5)
    assert load_model(old).info.class_names[1] == "disc"


def test_old_checkpoint_resumes_one_more_step(old: Path, tmp_path: Path):
    ckpt = old
    cfg = compose_train(
        [*ITS_RUN, f"data.root={tmp_path / 'data'}", "trainer.max_steps=2", f"ckpt_path={ckpt}"],
        tmp_path / "run",
    )
    train(cfg)
    resumed = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 2
    before = torch.load(old, weights_only=True)["state_dict"]
    changed = [k for k, v in resumed["state_dict"].items() if not torch.equal(v, before[k])]
    assert changed, "the resumed step trained nothing"


def test_old_checkpoint_exports_with_parity(old: Path, tmp_path: Path):
    out = tmp_path / "old.pt2"
    cfg = export_cfg(
        old, tmp_path, "format=exported_program", f"output={out}", "check_sizes=[[64,80]]"
    )
    assert export(cfg) == out
    assert load_model(out).info.backbone == "mobilenet_v2"
