"""A tiny trained checkpoint and the eval / predict / export configs around it, made once per
session and shared by the inference tests."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from fcn.data import VOCDataModule
from fcn.deploy.exporters import FORMATS
from fcn.export import export
from fcn.training.module import SegmentationModule

REPO = Path(__file__).resolve().parents[2]


CONF = REPO / "conf"


NUM_CLASSES = 6


def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    """A ResNet-18 FCN-8s trained 3 steps on the tiny tree, written once per session.

    The lr is tiny so the model stays near its (varied) initial predictions: a collapsed
    all-background model would make the metric comparisons trivially true.
    """
    path = tmp_path_factory.getbasetemp() / "fcn_eval_ckpt" / "tiny.ckpt"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    dm = VOCDataModule(
        root=str(root), num_classes=NUM_CLASSES, crop_size=[64, 64], batch_size=4, num_workers=0
    )
    module = SegmentationModule(
        "resnet18",
        "fcn8s",
        NUM_CLASSES,
        class_names=dm.class_names,
        optimizer={"name": "sgd", "lr": 1e-6, "momentum": 0.9},
    )
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=dm)
    tmp = path.with_suffix(".tmp")
    trainer.save_checkpoint(tmp, weights_only=True)
    tmp.rename(path)
    return path


def voc_data(root: Path) -> list[str]:
    """The tiny tree as data=voc, read in the main process."""
    return [
        "data=voc",
        f"data.root={root}",
        "data.classes=null",  # the tree's own names (synthetic.json), not VOC's 21
        "data.palette=null",
        f"data.num_classes={NUM_CLASSES}",
        "data.num_workers=0",
    ]


def voc(root: Path) -> list[str]:
    """The tiny tree as data=voc, on CPU in the main process."""
    return [*voc_data(root), "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def eval_cfg(ckpt: Path | None, root: Path, out: Path, *overrides: str):
    """fcn-eval's config on the tiny tree (ckpt=None: pass model= in the overrides)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "eval",
            [
                *([f"ckpt_path={ckpt}"] if ckpt else []),
                *voc(root),
                "+trainer.enable_model_summary=false",
                f"paths.output_dir={out}",
                *overrides,
            ],
        )


def predict_cfg(ckpt: Path | None, input_path: Path, out: Path, *overrides: str):
    """fcn-predict's config (ckpt=None: pass model= in the overrides)."""
    model = [f"ckpt_path={ckpt}"] if ckpt else []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "predict",
            [*model, f"input={input_path}", f"paths.output_dir={out}", *overrides],
        )


def export_cfg(ckpt: Path, out: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("export", [f"ckpt_path={ckpt}", f"paths.output_dir={out}", *overrides])


def exported_model(
    tmp_path_factory: pytest.TempPathFactory, ckpt: Path, root: Path, fmt: str
) -> tuple[Path, str]:
    """The tiny checkpoint exported as `fmt` by fcn-export with its default parity sizes and
    `verify_split=val` (with flip) on the tiny tree at `root`, once per session: (the file,
    what the export printed)."""
    path = tmp_path_factory.getbasetemp() / "fcn_exports" / f"tiny{FORMATS[fmt]}"
    printed = path.with_name(f"{path.name}.txt")
    if not printed.is_file():
        sizes = "check_sizes=[[97,131],[64,64]]"  # (the default adds 500x375)
        cfg = verify_cfg(ckpt, root, path.parent, f"format={fmt}", f"output={path}", sizes)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            export(cfg)
        printed.write_text(out.getvalue())
    return path, printed.read_text()


def verify_cfg(ckpt: Path, root: Path, out: Path, *overrides: str):
    """fcn-export with `verify_split=val` on the tiny tree, flip on (overrides win)."""
    return export_cfg(
        ckpt,
        out,
        "verify_split=val",
        *voc_data(root),
        "eval.flip=true",
        *overrides,
    )
