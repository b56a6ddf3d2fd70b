"""Experiment tracking and day-to-day ergonomics: MLflow, W&B offline, logger=many, sweep job
names, debug= presets, --help, and no warnings on a plain run."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.cli_runs import SUMMARY, tiny
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from PIL import Image

from fcn.cli.help import description, entry_help, group_options
from fcn.jobs.distributed import _quote
from fcn.jobs.run_names import job_dir_name, safe_name
from fcn.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
# A Python warning as printed: Lightning's `file.py:12: message`, or `file.py:12: XWarning: ...`.
PY_WARNING = re.compile(r"^\S.*\.py:\d+: |Warning: ", re.M)


def compose_train(overrides: list[str], run_dir: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        paths = [f"paths.output_dir={run_dir}", f"paths.tracking_dir={run_dir.parent}"]
        return compose("train", [*overrides, *paths])


def run_module(args: list[str], cwd: Path, *python_flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *python_flags, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine OpenMP's barriers made
    these runs ~10x slower with 2 threads than with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- sweep job names ---------------------------------------------------------------------------
def test_job_names_show_what_the_sweep_varies(tmp_path):
    job = ["head=fcn32s", f"data.root={tmp_path}/x", "optimizer.lr=0.0031622776601683794"]
    # Optuna: the search space says what varies; long sampled floats are cut to 4 digits.
    assert job_dir_name(3, job, None, {"optimizer.lr": "..."}) == "3_optimizer.lr=0.003162"
    # Basic sweeper: the sweep's command line (multirun.yaml) says what varies.
    task = ["head=fcn32s,fcn8s", f"data.root={tmp_path}/x", "optimizer.lr=0.01,0.1"]
    saved = {"hydra": {"overrides": {"task": task}}}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(saved))
    job = ["head=fcn8s", f"data.root={tmp_path}/x", "optimizer.lr=0.1"]
    assert job_dir_name(1, job, str(tmp_path)) == "1_head=fcn8s,optimizer.lr=0.1"
    # Not known: every override but those that only locate files; none left: the number.
    assert job_dir_name(2, job, str(tmp_path / "elsewhere")) == "2_head=fcn8s,optimizer.lr=0.1"
    assert job_dir_name(0, [f"data.root={tmp_path}"]) == "0"
    # File-system safe, short, and the same for the same overrides.
    assert safe_name("init_from='/a b/c.ckpt'") == "init_from=_a_b_c.ckpt_"
    long = job_dir_name(4, ["x=" + "a" * 200, "y=1"])
    assert len(long) <= 82 and long == job_dir_name(4, ["x=" + "a" * 200, "y=1"])
    assert long != job_dir_name(4, ["x=" + "a" * 200, "y=2"])


def test_job_dir_with_equals_and_commas_survives_the_ddp_rank_command():
    job_dir = Path("/runs/multirun/2025-01-01/12-00-00/0_head=fcn32s,optimizer.lr=0.01")
    override = OverridesParser.create().parse_override(f"hydra.run.dir={_quote(job_dir)}")
    assert override.value() == str(job_dir)


@pytest.mark.slow
def test_sweep_with_many_loggers_names_jobs_runs_and_tensorboard_runs(tmp_path, data_dir):
    """A 2-point sweep with logger=many: job directories, TensorBoard run names and MLflow run
    names carry the overrides; CSV, TensorBoard and MLflow all written; no Python warnings."""
    from mlflow.tracking import MlflowClient

    args = ["fcn.train", "-m", "head=fcn32s,fcn8s", "logger=many", "test_after_fit=false"]
    result = run_module([*args, *tiny(data_dir)], tmp_path)
    assert not PY_WARNING.search(result.stderr), PY_WARNING.findall(result.stderr)
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = ["0_head=fcn32s", "1_head=fcn8s"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == jobs
    # TensorBoard's run names are the event folders relative to --logdir.
    tb_runs = sorted({str(p.parent.relative_to(sweep)) for p in sweep.rglob("events.out.*")})
    assert tb_runs == [f"{job}/tensorboard" for job in jobs]
    assert all((sweep / job / "csv" / "metrics.csv").is_file() for job in jobs)

    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("fcn")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == jobs  # one experiment, one run per job
    for run in runs:
        assert run.data.tags["sweep_dir"].endswith(str(sweep.relative_to(tmp_path)))
        assert "head=" + run.data.params["head"] in run.data.tags["overrides"]
    logs = {Path(s[2]).relative_to(sweep).as_posix() for s in SUMMARY.findall(result.stdout)}
    assert logs == {f"{job}/tensorboard" for job in jobs}  # the summary line: TensorBoard's


# ---- MLflow and W&B ---------------------------------------------------------------------------
def test_mlflow_run_reads_back_metrics_params_images_and_best_checkpoint(tmp_path, data_dir):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    cfg = compose_train([*tiny(data_dir), "logger=mlflow", "trainer.max_epochs=2"], run_dir)
    train(cfg)
    database = tmp_path / "mlflow.db"  # paths.tracking_dir/mlflow.db
    client = MlflowClient(f"sqlite:///{database}")
    (run,) = client.search_runs([client.get_experiment_by_name("fcn").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/mIoU")
    assert len(history) == 2  # one per validation
    metrics = run.data.metrics
    assert {"train/loss_step", "train/lr", "val/loss", "val/IoU/background", "test/mIoU"} <= set(
        metrics
    )
    assert metrics["hparams/best_val_mIoU"] == pytest.approx(max(m.value for m in history))
    params = run.data.params
    assert params["head"] == "fcn8s" and params["optimizer.name"] == "sgd"  # module + config
    best = run.data.tags["best_checkpoint"]
    assert best.startswith(str(run_dir / "checkpoints" / "best-")) and Path(best).is_file()
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    assert any("val~predictions" in p and p.endswith(".png") for p in images), images
    assert any("test~confusion_matrix" in p and p.endswith(".png") for p in images), images
    # artifacts beside the database
    assert list((tmp_path / "mlartifacts").rglob("*val~predictions*.png"))


def test_wandb_offline_run_has_metrics_and_images_uses__wandb_init(
    tmp_path, data_dir, monkeypatch, capfd
):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    run_dir = tmp_path / "run"
    best = train(compose_train([*tiny(data_dir), "logger=wandb"], run_dir))
    err = capfd.readouterr().err
    assert (
        "offline" in err and "anonymous" not in err
    )  # fcn.training.loggers drops Lightning's default
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    (records,) = folder.glob("run-*.wandb")
    # wandb.finish() returns before wandb's own writer process has flushed the run file.
    wanted = (b"val/mIoU", b"test/mIoU", b"best_checkpoint")
    deadline = time.monotonic() + 60
    while not all(k in (data := records.read_bytes()) for k in wanted):
        assert time.monotonic() < deadline, [k for k in wanted if k not in data]
        time.sleep(0.2)
    assert f"{best:.4f}".encode() in data  # the best val/mIoU value itself
    assert list(folder.glob("files/media/images/val/predictions_*.png"))
    assert list(folder.glob("files/media/images/test/confusion_matrix_*.png"))
    assert "WANDB_MODE" not in os.environ  # the mode went to wandb.init, not the environment


# ---- debug presets ----------------------------------------------------------------------------
def _leaves(node, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    return set().union(*(_leaves(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items()))


@pytest.mark.parametrize("preset", group_options(CONF, "debug"))
def test_debug_preset_announces_exactly_what_it_sets(preset, tmp_path):
    raw = yaml.safe_load((CONF / "debug" / f"{preset}.yaml").read_text())
    note = raw["callbacks"].pop("debug_preset")
    assert set(note["changes"]) == _leaves(raw)  # nothing set silently, nothing claimed wrongly
    cfg = compose_train([f"debug={preset}", "trainer.max_epochs=3"], tmp_path)
    from hydra.utils import instantiate

    line = instantiate(cfg.callbacks.debug_preset).line()
    assert line.startswith(f"debug={preset}: ")
    if "trainer.max_epochs" in note["changes"]:
        assert "trainer.max_epochs=3" in line  # a later override shows as what really runs


def _label_entropy(root: Path, split: str) -> float:
    """Entropy (nats) of the class frequencies over a split's labelled pixels: the lowest
    cross-entropy a model that ignores its input can reach."""
    ids = (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    labels = [np.asarray(Image.open(root / "SegmentationClass" / f"{i}.png")) for i in ids]
    counts = np.bincount(np.concatenate([m[m != 255].ravel() for m in labels])).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_debug_overfit_drives_the_train_loss_near_zero(tmp_path, capsys):
    """2 images, one batch: FCN-8s must fit them far below what an input-blind model reaches."""
    overrides = [
        *tiny(tmp_path / "two", num_train=2, batch_size=2),
        "debug=overfit",
        "trainer.overfit_batches=1",
        "trainer.max_epochs=60",
        "trainer.check_val_every_n_epoch=60",
        "scheduler.warmup_steps=0",
        "logger=csv",
    ]
    train(compose_train(overrides, tmp_path / "run"))
    note = "debug=overfit: trainer.overfit_batches=1, trainer.max_epochs=60"
    assert note in capsys.readouterr().out
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r["train/loss_step"]]
    assert len(losses) == 60
    (root,) = (tmp_path / "two").glob("voc_*")  # the generated tree
    floor = _label_entropy(root, "train")  # ~0.46 nats for these two images
    assert floor > 0.3
    final = sum(losses[-5:]) / 5  # augmentation still moves it a little from step to step
    assert final < 0.25 * floor, (final, floor, losses[::5])  # measured: ~0.05


def test_debug_profiler_writes_its_report(tmp_path, data_dir, capsys):
    train(compose_train([*tiny(data_dir), "debug=profiler", "logger=none"], tmp_path / "run"))
    out = capsys.readouterr().out
    assert "debug=profiler: trainer.max_epochs=1, trainer.profiler._target_=" in out
    report = (tmp_path / "run" / "fit-profile.txt").read_text()
    assert "Profiler Report" in report and "run_training_epoch" in report


# ---- --help -----------------------------------------------------------------------------------
def test_every_config_option_has_a_one_line_description():
    groups = [g.relative_to(CONF).as_posix() for g in CONF.rglob("*") if g.is_dir()]
    for group in groups:
        for option in group_options(CONF, group):
            text = description(CONF / group / f"{option}.yaml")
            assert 10 <= len(text) <= 200, f"{group}/{option}.yaml: {text!r}"


@pytest.mark.parametrize("entry", ["train", "eval", "predict", "export"])
def test_help_lists_groups_options_descriptions_and_keys(entry):
    text = entry_help(entry).replace("$$", "$")
    head = (CONF / f"{entry}.yaml").read_text().splitlines()[0].lstrip("# ")
    assert text.startswith(head) and "--cfg job" in text
    used = {
        k
        for d in yaml.safe_load((CONF / f"{entry}.yaml").read_text())["defaults"]
        if isinstance(d, dict)
        for k in d
        if "/" not in k and k not in ("hydra",)
    }
    for group in [*used, "hydra/launcher"]:
        assert re.search(rf"^{re.escape(group)} \(default: ", text, re.M), group
        for option in group_options(CONF, group):
            first_words = description(CONF / group / f"{option}.yaml").split()[:3]
            assert re.search(rf"^  {option} +{re.escape(' '.join(first_words))}", text, re.M)
    assert re.search(r"^  ckpt_path=null  ", text, re.M)  # keys with their comment


@pytest.mark.slow
def test_help_through_hydra_and_no_warnings_on_a_plain_first_run(tmp_path):
    """`--help` as Hydra prints it; then the README's commands on a tiny tree under -W error
    (any warning is an error; fcn/cli/known_warnings.py names the few silenced on purpose): the
    synthetic generator, the default fcn.train run, and the export whose parity check loads
    TorchScript (deprecated by torch)."""
    result = run_module(["fcn.train", "--help"], tmp_path)
    assert "debug (default: none)" in result.stdout and "  overfit " in result.stdout
    root = tmp_path / "voc"
    size = ["--size", "64", "64"]
    run_module(
        ["fcn.data.synthetic", str(root), "--num-train", "6", "--num-val", "3", *size],
        tmp_path,
        "-W",
        "error",
    )
    result = run_module(["fcn.train", *tiny(root)], tmp_path, "-W", "error")
    assert not PY_WARNING.search(result.stderr), PY_WARNING.findall(result.stderr)
    summary = SUMMARY.search(result.stdout)
    assert summary and not math.isnan(float(summary.group(1)))
    ckpt = Path(summary.group(2)).parent / "last.ckpt"
    result = run_module(
        ["fcn.export", f"ckpt_path={ckpt}", "format=torchscript"], tmp_path, "-W", "error"
    )
    assert not PY_WARNING.search(result.stderr), PY_WARNING.findall(result.stderr)


def test_tracking_logger_without_its_package_is_one_clear_line(monkeypatch, tmp_path):
    from fcn.core.errors import ConfigError
    from fcn.training import loggers

    real = loggers.importlib.util.find_spec
    monkeypatch.setattr(
        loggers.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name)
    )
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow-skinny package"):
        loggers.MLFlowLogger(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
