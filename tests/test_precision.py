"""`trainer.precision: auto` (trainer=gpu): bf16-mixed where the GPU has bf16, 16-mixed on older
GPUs, 32-true on CPU; an explicit trainer.precision is kept. GPU capabilities are monkeypatched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from fcn.train import train
from fcn.training.precision import auto_precision, resolve_precision

CONF = Path(__file__).resolve().parents[1] / "conf"


def fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "auto"])
def test_auto_is_bf16_on_a_gpu_that_has_it(monkeypatch, accelerator):
    fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", bf16=True)
    assert auto_precision(accelerator) == ("bf16-mixed", "NVIDIA H100 80GB HBM3 supports bf16")


def test_auto_is_fp16_on_a_gpu_without_bf16(monkeypatch):
    fake_gpu(monkeypatch, "Tesla V100-SXM2-16GB", bf16=False)
    assert auto_precision("gpu") == ("16-mixed", "Tesla V100-SXM2-16GB has no bf16")


def test_auto_is_fp32_on_cpu(monkeypatch):
    fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", bf16=True)
    assert auto_precision("cpu")[0] == "32-true"  # a GPU present but not asked for
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_precision("auto") == ("32-true", "no CUDA GPU")


def test_resolve_replaces_only_auto(monkeypatch):
    fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", bf16=True)
    cfg = {"accelerator": "gpu", "precision": "auto"}
    assert (
        resolve_precision(cfg) == "precision=bf16-mixed (auto: NVIDIA A100-SXM4-40GB supports bf16)"
    )
    assert cfg["precision"] == "bf16-mixed"
    explicit = {"accelerator": "gpu", "precision": "16-mixed"}
    assert resolve_precision(explicit) == "precision=16-mixed"
    assert explicit["precision"] == "16-mixed"


def _compose(overrides: list[str], tmp_path: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", [*overrides, f"paths.output_dir={tmp_path}"])


def test_trainer_gpu_asks_for_auto_and_an_override_wins(tmp_path):
    assert _compose(["trainer=gpu"], tmp_path).trainer.precision == "auto"
    override = _compose(["trainer=gpu", "trainer.precision=32-true"], tmp_path)
    assert override.trainer.precision == "32-true"


def test_fcn_train_prints_the_choice_in_its_start_line(tmp_path, capsys):
    cfg = _compose(
        [
            "trainer=gpu",
            "trainer.accelerator=cpu",  # no GPU here: auto resolves to fp32
            f"data.root={tmp_path / 'cache'}",
            "data.synthetic.num_train=2",
            "data.synthetic.num_val=1",
            "data.synthetic.size=[64,64]",
            "data.crop_size=[64,64]",
            "data.batch_size=2",
            "data.num_workers=0",
            "trainer.fast_dev_run=true",
            "trainer.enable_progress_bar=false",
            "logger=none",
        ],
        tmp_path,
    )
    train(cfg)
    out = capsys.readouterr().out
    assert "start: accelerator=cpu devices=1 precision=32-true (auto: no CUDA GPU)" in out
    assert cfg.trainer.precision == "32-true"
