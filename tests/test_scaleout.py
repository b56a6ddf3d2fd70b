"""Scale-out: DDP under Hydra (also inside sweeps), launchers, Optuna, interrupt/resume, switches.

CLIs run as subprocesses with cwd=tmp_path, so every outputs/ tree they make is counted here.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from helpers.cli_runs import CONF, SUMMARY, cli_env, compose_train, ok, run_cli, run_dirs, tiny
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fcn.data import VOCDataModule
from fcn.data.training_stream import ResumableLoader
from fcn.train import train
from fcn.training.module import SegmentationModule

DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def read_test_metrics(csv_file: Path) -> dict[str, float]:
    """The test/* row of a CSVLogger metrics.csv."""
    with csv_file.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("test/mIoU")]
    assert len(rows) == 1, rows
    return {k: float(v) for k, v in rows[0].items() if k.startswith("test/") and v}


# ---- DDP: exact metrics, one run directory ------------------------------------------------------
@pytest.mark.slow
def test_ddp_eval_metrics_equal_single_process_and_one_run_dir(tmp_path, data_dir):
    ok(run_cli([*tiny(data_dir), "test_after_fit=false"], tmp_path / "fit"))
    (ckpt,) = (tmp_path / "fit" / "outputs").glob("*/*/checkpoints/last.ckpt")
    # Evaluate the same weights (no training: max_epochs=0) on the 3 val images.
    same = [*tiny(data_dir), f"init_from={ckpt}", "trainer.max_epochs=0", "logger=csv"]
    ok(run_cli(same, tmp_path / "single"))
    out = ok(run_cli([*same, *DDP_CPU], tmp_path / "ddp"))

    assert "note: trainer.sync_batchnorm needs a GPU" in out  # ddp.yaml's switch, off on CPU
    assert out.count("best val/mIoU=") == 1  # only rank 0 writes the summary line
    (ddp_run,) = run_dirs(tmp_path / "ddp")  # exactly one run directory for both ranks
    assert (ddp_run / "train_ddp_process_1.log").is_file()  # rank 1 ran, in that directory
    assert list((tmp_path / "ddp" / "outputs").rglob("*/.hydra")) == [ddp_run / ".hydra"]
    (single_run,) = run_dirs(tmp_path / "single")
    single = read_test_metrics(single_run / "csv" / "metrics.csv")
    ddp = read_test_metrics(ddp_run / "csv" / "metrics.csv")
    # Losses are summed per pixel on each rank, then synced: equal up to the order of the sums.
    assert ddp.pop("test/loss") == pytest.approx(single.pop("test/loss"), rel=1e-6)
    assert len(single) >= 5 and single == ddp  # mIoU, accuracies, fwIoU, every class IoU


def test_eval_loader_outside_ddp_is_plain(tiny_datamodule: VOCDataModule):
    tiny_datamodule.setup("fit")
    loader = tiny_datamodule.val_dataloader()
    assert not isinstance(loader.sampler, torch.utils.data.DistributedSampler)
    assert len(loader.dataset) == sum(len(m) for _, m in loader)


# ---- sweeps -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_submitit_local_launcher_runs_both_jobs(tmp_path, data_dir):
    args = ["-m", "hydra/launcher=local", "head=fcn32s,fcn8s", *tiny(data_dir)]
    ok(run_cli(args, tmp_path))
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = ["0_head=fcn32s", "1_head=fcn8s"]  # job dirs say what they are (fcn/jobs/run_names.py)
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == [
        *jobs,
        "multirun.yaml",
    ]
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    summaries = SUMMARY.findall(logs)
    assert sorted(Path(s[1]).parts[-3] for s in summaries) == jobs
    for job in jobs:
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_job_once_with_its_own_ranks(tmp_path, data_dir):
    # The second job's backbone is timm's resnet18: timm backbones train under DDP as well.
    sweep_args = ["-m", "backbone=resnet18,timm", "head=fcn8s"]
    out = ok(run_cli([*sweep_args, *tiny(data_dir), *DDP_CPU], tmp_path))
    assert len(SUMMARY.findall(out)) == 2
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["multirun"]  # no stray runs
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_backbone=resnet18", "1_backbone=timm"]  # '=' in job dirs: ranks still run
    for job, backbone in (("0_backbone=resnet18", "resnet18"), ("1_backbone=timm", "timm")):
        ckpt = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["backbone"] == backbone
        assert ckpt["global_step"] == 1  # 6 images over 2 ranks, batch 3: one step each
        assert len(list((sweep / job).glob("train_ddp_process_*.log"))) == 1  # one extra rank
        assert not (sweep / job / "multirun.yaml").exists()  # the rank started no sweep


@pytest.mark.slow
def test_optuna_search_reports_the_best_val_miou(tmp_path, data_dir):
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "test_after_fit=false"]
    searched = [a for a in tiny(data_dir) if not a.startswith("data.batch_size=")]
    out = ok(run_cli([*args, *searched], tmp_path))
    scores = [float(s[0]) for s in SUMMARY.findall(out)]
    assert len(scores) == 3
    (results,) = (tmp_path / "outputs" / "multirun").glob("*/*/optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    assert best["best_value"] == pytest.approx(max(scores), abs=1e-4)
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}


def test_slurm_launcher_maps_devices_nodes_and_resources(tmp_path):
    args = [
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=90",
        "--cfg",
        "all",  # `--cfg hydra` leaves out trainer.*, which the launcher values point at
        "--resolve",
    ]
    launcher = yaml.safe_load(ok(run_cli(args, tmp_path)))["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["nodes"], launcher["gpus_per_node"]) == (4, 2, 4)
    assert (launcher["partition"], launcher["timeout_min"]) == ("gpu", 90)
    assert launcher["cpus_per_task"] == 8 and launcher["mem_gb"] == 64
    assert not (tmp_path / "outputs").exists()


def test_local_launcher_and_optuna_compose(tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        local = compose("train", ["hydra/launcher=local"], return_hydra_config=True)
        search = compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("LocalLauncher")
    assert local.hydra.launcher.tasks_per_node == 1
    assert search.hydra.sweeper.direction == "maximize"
    assert search.hydra.sweeper.sampler.seed == search.seed


# ---- interrupt and resume ---------------------------------------------------------------------
class PauseForSignal(L.Callback):
    """Test helper (loaded by the CLI from tests/): at global step `step`, write `marker` and
    wait for the test to send the signal, so it lands at a known point mid-epoch."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.write_text(str(batch_idx))
            deadline = time.monotonic() + 120
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


def _val_curve(run: Path) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("val/mIoU")]


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, data_dir):
    # 8 images, batch 2: 4 steps per epoch, 2 epochs = 8 steps; SIGTERM after step 6.
    args = [*tiny(data_dir, num_train=8, batch_size=2), "trainer.max_epochs=2", "seed=7"]
    marker = tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=test_scaleout.PauseForSignal",
        "+callbacks.pause.step=6",
        f"+callbacks.pause.marker={marker}",
    ]
    cwd = tmp_path / "interrupted"
    cwd.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fcn.train", *args, *pause],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate()[1][-3000:]
    assert marker.read_text() == "1"  # the 2nd of 4 batches of epoch 2: mid-epoch
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted at step 6" in out and "Traceback" not in err
    (run,) = run_dirs(cwd)
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6

    ok(run_cli([*args, f"resume={run}"], cwd))
    ok(run_cli(args, tmp_path / "straight"))
    (straight,) = run_dirs(tmp_path / "straight")

    resumed_ckpt = torch.load(last, weights_only=True)
    straight_ckpt = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed_ckpt["global_step"] == straight_ckpt["global_step"] == 8
    for name, value in straight_ckpt["state_dict"].items():
        torch.testing.assert_close(resumed_ckpt["state_dict"][name], value, atol=1e-6, rtol=0)
    # The curves continue in the interrupted run's own TensorBoard directory, equal throughout.
    resumed_curve, straight_curve = _val_curve(run), _val_curve(straight)
    assert [s for s, _ in resumed_curve] == [s for s, _ in straight_curve] == [3, 7]
    for (_, a), (_, b) in zip(resumed_curve, straight_curve):
        assert a == pytest.approx(b, abs=1e-6)


def test_training_stream_resumes_mid_epoch_exactly(tiny_datamodule: VOCDataModule):
    L.seed_everything(3)
    tiny_datamodule.batch_size = 2  # 8 images: 4 batches
    tiny_datamodule.setup("fit")
    loader = tiny_datamodule.train_dataloader()
    assert isinstance(loader, ResumableLoader)
    loader.sampler.set_epoch(1)
    it = iter(loader)
    first = [next(it) for _ in range(2)]
    state = loader.state_dict()
    rest = list(it)
    assert state["batches"] == 2 and len(rest) == 2

    torch.manual_seed(999)  # whatever the global RNG is now, the stream does not depend on it
    again = tiny_datamodule.train_dataloader()
    again.sampler.set_epoch(1)
    again.load_state_dict(state)
    resumed = list(again)
    assert len(resumed) == 2
    for (img_a, mask_a), (img_b, mask_b) in zip(rest, resumed):
        assert torch.equal(img_a, img_b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(first[0][0], rest[0][0])
    assert len(list(again)) == 4  # the skip applies to the resumed epoch only


@pytest.mark.parametrize(
    "switch",
    [
        ["trainer.precision=bf16-mixed"],
        ["trainer.precision=16-mixed"],  # Lightning runs it as bf16-mixed on CPU
        ["channels_last=true"],
        ["trainer.sync_batchnorm=true"],  # GPU-only: turned off on CPU with a note
    ],
)
def test_switches_run_on_cpu(switch, tmp_path, data_dir, capsys):
    cfg = compose_train([*tiny(data_dir), "trainer.fast_dev_run=true", *switch], tmp_path)
    train(cfg)
    if switch == ["trainer.sync_batchnorm=true"]:
        assert "note: trainer.sync_batchnorm needs a GPU" in capsys.readouterr().out


def test_channels_last_gives_the_same_predictions():
    torch.manual_seed(0)
    plain = SegmentationModule("resnet18", "fcn8s", num_classes=6).eval()
    fast = SegmentationModule("resnet18", "fcn8s", num_classes=6, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-4, rtol=1e-4)
    assert fast.model.backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compile_gives_the_same_predictions():
    # A timm backbone: torchvision's ResNet-18 is compiled by tests/test_gpu.py, which .ci/run
    # also runs on the CPU. Forward only (inductor takes ~15 s here; a fit would double it).
    torch.manual_seed(0)
    plain = SegmentationModule("timm", "fcn32s", num_classes=6, model_name="convnext_atto").eval()
    compiled = SegmentationModule(
        "timm", "fcn32s", num_classes=6, model_name="convnext_atto", compile=True
    ).eval()
    compiled.load_state_dict(plain.state_dict())
    assert set(compiled.state_dict()) == set(plain.state_dict())  # checkpoints keep plain names
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), plain(x), atol=1e-4, rtol=1e-4)
