import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fcn.train import build_callbacks_and_loggers, train

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir()}
GROUPS.pop("hydra", None)
GROUPS.pop("hparams_search", None)
EVAL_OPTIONS = GROUPS.pop("eval")  # fcn-eval, fcn-predict and fcn-export's group


def tiny(tmp_path: Path, data_dir: Path) -> list[str]:
    """Overrides for a seconds-long run on a tiny synthetic tree."""
    return [
        f"data.root={data_dir}",
        "data.synthetic.num_train=6",
        "data.synthetic.num_val=3",
        "data.synthetic.size=[64,64]",
        "data.crop_size=[64,64]",
        "data.batch_size=3",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
    ]


def compose_train(overrides: list[str], output_dir: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        paths = [f"paths.output_dir={output_dir}", f"paths.tracking_dir={output_dir}"]
        return compose("train", [*overrides, *paths])


@pytest.mark.parametrize("entry", ["eval", "predict", "export"])
@pytest.mark.parametrize("option", EVAL_OPTIONS)
def test_every_eval_option_composes_for_every_inference_entry_point(entry, option):
    from fcn.models.inference import InferenceOptions

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(entry, [f"eval={option}"])
    options = InferenceOptions.from_config(cfg.eval)
    assert options.mode == {"whole": "whole", "slide": "slide"}[option]
    assert options.window == (512, 512) and options.scales == (1.0,)


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group, options in GROUPS.items() for option in options]
)
def test_every_config_option_composes_and_instantiates(override, tmp_path):
    extra = []
    if override == "trainer=gpu" and not torch.cuda.is_available():
        assert compose_train([override], tmp_path).trainer.accelerator == "gpu"
        extra = ["trainer.accelerator=cpu", "trainer.precision=32-true"]  # instantiable here
    if override == "data=folder":  # your own data: its root and classes have no default
        extra = [f"data.root={tmp_path}", "data.classes=[background,thing]"]
    overrides = [override, *extra, "backbone.pretrained=false", "data.num_workers=0"]
    cfg = compose_train(overrides, tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, L.LightningDataModule)
    if override.startswith(("backbone=", "head=", "experiment=")):  # the model-changing options
        module = instantiate(cfg.model, _convert_="all")
        assert module.model.backbone_name == cfg.backbone.name
        assert module.model.head_name == cfg.head.name
    callbacks, loggers = build_callbacks_and_loggers(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert isinstance(trainer, L.Trainer)


def test_experiment_presets_carry_their_recipes(tmp_path):
    d2l = compose_train(["experiment=d2l_fcn32s_resnet18"], tmp_path)
    assert (d2l.head.name, d2l.backbone.name, d2l.data.batch_size) == ("fcn32s", "resnet18", 32)
    assert list(d2l.data.crop_size) == [320, 480] and d2l.optimizer.lr == 1e-3
    seed = compose_train(["experiment=seed003_fcn8s_resnet34"], tmp_path)
    assert (seed.head.name, seed.backbone.name, seed.trainer.max_epochs) == (
        "fcn8s",
        "resnet34",
        80,
    )
    assert seed.scheduler.name == "step" and list(seed.scheduler.milestones) == [50]
    paper = compose_train(["experiment=paper_fcn8s_vgg16"], tmp_path)
    assert paper.data.train_split == "train_aug" and paper.head.learn_upsampling is False
    cpu = compose_train(["experiment=voc_mobilenet_cpu"], tmp_path)
    assert (cpu.head.name, cpu.backbone.name, cpu.backbone.pretrained) == (
        "fcn8s",
        "mobilenet_v2",
        True,
    )
    assert (cpu.optimizer.name, cpu.optimizer.backbone_lr_mult) == ("adamw", 0.1)
    assert cpu.trainer.max_epochs % cpu.trainer.check_val_every_n_epoch == 0  # last epoch validates


def test_fast_dev_run(tmp_path, data_dir):
    cfg = compose_train([*tiny(tmp_path, data_dir), "trainer.fast_dev_run=true"], tmp_path)
    train(cfg)


def _tags(event_dir: Path) -> set[str]:
    acc = EventAccumulator(str(event_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return set(tags["scalars"]) | set(tags["images"])


def test_fit_logs_tags_checkpoints_and_resumes(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    cfg = compose_train([*tiny(tmp_path, data_dir), "trainer.max_epochs=2"], run)
    best = train(cfg)
    out = capsys.readouterr().out
    summary = re.search(r"best val/mIoU=(\d\.\d{4}) checkpoint=(\S+) logs=(\S+)", out)
    assert summary and float(summary.group(1)) == pytest.approx(best, abs=1e-4)
    assert Path(summary.group(2)).is_file() and summary.group(2).startswith(str(run))
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()

    tags = _tags(run / "tensorboard")
    expected = {
        *("train/loss_step", "train/lr", "val/loss", "val/mIoU", "val/pixel_acc", "val/mean_acc"),
        *(
            "val/fwIoU",
            "val/IoU/background",
            "val/predictions",
            "test/confusion_matrix",
            "test/mIoU",
        ),
    }
    assert expected <= tags, expected - tags
    steps = torch.load(last, weights_only=True)["global_step"]
    assert steps == 4  # 2 epochs x 2 batches of 3 images

    resumed = compose_train(
        [*tiny(tmp_path, data_dir), "trainer.max_epochs=3", f"ckpt_path={last}"], run
    )
    train(resumed)
    assert torch.load(last, weights_only=True)["global_step"] == 6


def test_staged_training_copies_matching_weights(tmp_path, data_dir):
    run32 = tmp_path / "fcn32s"
    train(compose_train([*tiny(tmp_path, data_dir), "head=fcn32s", "test_after_fit=false"], run32))
    ckpt = run32 / "checkpoints" / "last.ckpt"
    cfg = compose_train([*tiny(tmp_path, data_dir), "head=fcn8s", f"init_from={ckpt}"], tmp_path)
    module = instantiate(cfg.model, _convert_="all")
    copied = module.load_matching_weights(ckpt)
    state32 = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(k.startswith("model.backbone.") for k in copied)
    assert "model.head.score32.weight" in copied
    for name in copied:
        torch.testing.assert_close(module.state_dict()[name], state32[name])


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fcn.train", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_bad_checkpoint_path_is_one_clear_line(tmp_path, data_dir):
    result = run_cli([*tiny(tmp_path, data_dir), "ckpt_path=/nope/last.ckpt"], tmp_path)
    assert result.returncode == 2
    assert "ckpt_path=/nope/last.ckpt" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_run_and_multirun_make_their_directories(tmp_path, data_dir):
    result = run_cli(tiny(tmp_path, data_dir), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^best val/mIoU=\d\.\d{4} checkpoint=\S+ logs=\S+$", result.stdout, re.M)
    assert len(list((tmp_path / "outputs").glob("*/*/checkpoints/last.ckpt"))) == 1

    result = run_cli(["-m", "head=fcn32s,fcn8s", *tiny(tmp_path, data_dir)], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/*/*/checkpoints/last.ckpt"))
    assert len(jobs) == 2
    assert result.stdout.count("best val/mIoU=") == 2


def test_checkpoint_of_a_deeper_backbone_is_refused(tmp_path):
    from fcn.core.errors import CheckpointError
    from fcn.deploy.model_files import check_checkpoint
    from fcn.training.module import SegmentationModule

    deeper = SegmentationModule(backbone="resnet34", head="fcn8s", num_classes=3)
    path = tmp_path / "resnet34.ckpt"
    torch.save({"state_dict": deeper.state_dict()}, path)
    # every ResNet-18 name exists in a ResNet-34 with the same shape: only the extras tell
    with pytest.raises(CheckpointError, match="unexpected"):
        check_checkpoint(path, SegmentationModule(backbone="resnet18", head="fcn8s", num_classes=3))


def test_bad_prediction_panel_size_is_one_clear_line(tmp_path, data_dir):
    result = run_cli([*tiny(tmp_path, data_dir), "model.log_image_max_side=0"], tmp_path)
    assert result.returncode == 2
    assert "model.log_image_max_side" in result.stderr and "Traceback" not in result.stderr
