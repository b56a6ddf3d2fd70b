"""data=folder and the Cityscapes/ADE20K presets: tiny generated trees in each layout read as
the right classes, train, evaluate (class names in TensorBoard tags and metrics.json), and
voc_mini laid out as a folder dataset scores exactly as data=voc."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers.folder_trees import (
    CLASSES,
    PALETTE,
    ade20k_tree,
    cityscapes_tree,
    pair_list_tree,
    sample,
    split_folder_tree,
    stem_list_tree,
)
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fcn.evaluate import evaluate
from fcn.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
FOLDER_CLASSES = f"data.classes=[{','.join(CLASSES)}]"


def _layouts(tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    """layout name -> (its root, the data overrides that read it)."""
    return {
        "stem_lists": (
            stem_list_tree(tmp / "stems"),
            ["data=folder", FOLDER_CLASSES, "data.train_split=train.txt", "data.val_split=val.txt"],
        ),
        "pair_lists_void_4": (
            pair_list_tree(tmp / "pairs", void=4),
            [
                "data=folder",
                FOLDER_CLASSES,
                "data.ignore_index=4",
                "data.image_dir=null",
                "data.mask_dir=null",
                "data.train_split=train.txt",
                "data.val_split=val.txt",
            ],
        ),  # fmt: skip
        "split_folders": (split_folder_tree(tmp / "split"), ["data=folder", FOLDER_CLASSES]),
        "rgb_masks": (
            split_folder_tree(tmp / "rgb", rgb_masks=True),
            ["data=folder", FOLDER_CLASSES, f"data.palette={PALETTE}", "data.void_color=[0,0,0]"],
        ),
        "cityscapes": (cityscapes_tree(tmp / "cityscapes"), ["data=cityscapes"]),
        "ade20k": (ade20k_tree(tmp / "ade"), ["data=ade20k"]),
    }


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str]]]:
    return _layouts(tmp_path_factory.mktemp("layouts"))


# class index each layout's generated class c must read as (void stays 255)
EXPECTED_CLASS = {
    "cityscapes": [0, 8, 2, 13],  # road, vegetation, building, car (train ids)
    "ade20k": [0, 1, 2, 3],  # stored as c + 1
}


def compose_train(overrides: list[str], out: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "train", [*overrides, f"paths.output_dir={out}", f"paths.tracking_dir={out}"]
        )


def small(root: Path) -> list[str]:
    return [
        f"data.root={root}", "data.crop_size=[64,64]", "data.batch_size=4", "data.num_workers=0",
        "data.persistent_workers=false", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["stem_lists", "pair_lists_void_4", "split_folders", "rgb_masks", "cityscapes", "ade20k"],
)
def test_layout_reads_every_pair_as_its_classes(layouts, name: str, tmp_path: Path) -> None:
    root, overrides = layouts[name]
    dm = instantiate(compose_train([*overrides, *small(root)], tmp_path).data)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 2)
    expected = EXPECTED_CLASS.get(name, [0, 1, 2, 3])
    table = np.full(256, 255, dtype=np.uint8)
    table[:4] = expected
    for index, seed in ((0, 100), (1, 101)):
        _, mask = dm.val_dataset[index]
        np.testing.assert_array_equal(mask.numpy(), table[sample(seed)[1]])
    if name in EXPECTED_CLASS:
        assert dm.class_names[expected[3]] == {"cityscapes": "car", "ade20k": "floor"}[name]
    else:
        assert dm.class_names == CLASSES


def _tags(run: Path) -> set[str]:
    tags: set[str] = set()
    for events in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return tags


@pytest.mark.parametrize("name", ["stem_lists", "pair_lists_void_4", "rgb_masks", "cityscapes"])
def test_layout_trains_and_evaluates_with_its_class_names(layouts, name: str, tmp_path: Path):
    root, overrides = layouts[name]
    run = tmp_path / "run"
    cfg = compose_train([*overrides, *small(root), "debug=limit", "trainer.max_epochs=1"], run)
    train(cfg)
    names = instantiate(cfg.data).class_names
    tags = _tags(run)
    # a class the val images hold has its curve, under its own name
    shown = CLASSES[1] if name != "cityscapes" else "car"
    assert f"val/IoU/{shown}" in tags and "test/confusion_matrix" in tags
    assert not any("aeroplane" in t for t in tags)
    ckpt = next((run / "checkpoints").glob("last.ckpt"))
    stored = torch.load(ckpt, weights_only=True, map_location="cpu")["hyper_parameters"]
    assert stored["class_names"] == names and len(stored["palette"]) == len(names)

    out = tmp_path / "eval"
    with initialize_config_dir(str(CONF), version_base="1.3"):
        ecfg = compose(
            "eval",
            [f"ckpt_path={ckpt}", *overrides, *small(root)[:1], "data.num_workers=0",
             "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
             f"paths.output_dir={out}"],
        )  # fmt: skip
    evaluate(ecfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["per_class_iou"]) == names
    assert metrics["num_images"] == 2


def test_eval_of_a_folder_model_needs_no_class_list(layouts, tmp_path: Path) -> None:
    """data.classes left unset: the checkpoint's classes read the masks."""
    root, overrides = layouts["split_folders"]
    run = tmp_path / "run"
    train(compose_train([*overrides, *small(root), "debug=limit"], run))
    out = tmp_path / "eval"
    with initialize_config_dir(str(CONF), version_base="1.3"):
        ecfg = compose(
            "eval",
            [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "data=folder", f"data.root={root}",
             "data.num_workers=0", "trainer.accelerator=cpu", f"paths.output_dir={out}"],
        )  # fmt: skip
    evaluate(ecfg)
    assert list(json.loads((out / "metrics.json").read_text())["per_class_iou"]) == CLASSES


@pytest.mark.slow
def test_voc_mini_as_folder_scores_exactly_as_data_voc(voc_mini: Path, tmp_path: Path) -> None:
    """The 564 voc_mini pairs linked into a folder layout give data=voc's metrics.json."""
    tree = tmp_path / "voc_as_folder"
    for split in ("train", "val"):
        ids = (voc_mini / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
        for kind, src, ext in (
            ("images", "JPEGImages", "jpg"),
            ("masks", "SegmentationClass", "png"),
        ):
            folder = tree / kind / split
            folder.mkdir(parents=True)
            for i in ids:
                os.symlink(voc_mini / src / f"{i}.{ext}", folder / f"{i}.{ext}")
    from fcn.training.module import SegmentationModule

    voc = compose_train(["data=voc", f"data.root={voc_mini}"], tmp_path).data
    torch.manual_seed(0)
    module = SegmentationModule("mobilenet_v2", "fcn8s", 21, class_names=list(voc.classes))
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    results = []
    for data in (
        ["data=voc", f"data.root={voc_mini}"],
        ["data=folder", f"data.root={tree}", "data.image_suffix=.jpg"],
    ):
        out = tmp_path / data[0].split("=")[1]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            ecfg = compose(
                "eval",
                # half-size forwards (4x fewer FLOPs); both score the full-size masks
                [f"ckpt_path={ckpt}", *data, "data.num_workers=0", "trainer.accelerator=cpu",
                 "trainer.enable_progress_bar=false", f"paths.output_dir={out}",
                 "eval.scales=[0.5]"],
            )  # fmt: skip
        result = evaluate(ecfg)
        results.append({k: v for k, v in result.items() if k not in ("model", "ckpt_path")})
    assert results[0]["num_images"] == 269
    assert results[0] == results[1]


def test_cityscapes_validates_by_sliding_window_and_it_scores_like_whole_images(tmp_path, tiny_voc):
    cfg = compose_train(["data=cityscapes", f"data.root={tmp_path}"], tmp_path)
    assert dict(cfg.model.val_inference) == {
        "mode": "slide", "window": [1024, 1024], "stride": [683, 683]
    }  # fmt: skip
    assert compose_train([], tmp_path).model.val_inference is None  # other data: whole images
    from fcn.data import VOCDataModule
    from fcn.training.module import SegmentationModule

    torch.manual_seed(0)
    whole = SegmentationModule("resnet18", "fcn8s", 6)
    covering = {"mode": "slide", "window": [256, 256], "stride": [128, 128]}  # one window
    small = {"mode": "slide", "window": [40, 48], "stride": [20, 24]}  # several per image
    dm = VOCDataModule(root=str(tiny_voc), num_classes=6, batch_size=4, num_workers=0)
    scores = []
    for options in (None, covering, small):
        module = SegmentationModule("resnet18", "fcn8s", 6, val_inference=options)
        module.load_state_dict(whole.state_dict())
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False)  # fmt: skip
        scores.append(trainer.validate(module, datamodule=dm, verbose=False)[0]["val/mIoU"])
    assert scores[1] == scores[0]  # a window covering the image is the whole image
    assert scores[2] != scores[0]  # smaller windows: the validation really slides
