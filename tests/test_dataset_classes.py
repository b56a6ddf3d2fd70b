"""Classes are data: class lists, palettes, void values and label maps from config; one-line
errors for bad input; fcn-data check/stats for any data config; class weights; a 4-class
folder model predicted and exported with no data config, in its own palette."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.folder_trees import CLASSES, PALETTE, save_index, split_folder_tree, stem_list_tree
from helpers.old_checkpoint import rebuild_old_checkpoint
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from fcn.core.classes import voc_colormap
from fcn.core.errors import ConfigError, DataError
from fcn.data.labels import LabelSpec
from fcn.data.prepare import main as fcn_data
from fcn.data.stats import median_frequency_weights, scan

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
FOLDER = ["data=folder", f"data.classes=[{','.join(CLASSES)}]", "data.num_workers=0"]


def data_module(root: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [*FOLDER, f"data.root={root}", *overrides])
    return instantiate(cfg.data)


def setup_error(root: Path, *overrides: str) -> str:
    with pytest.raises(DataError) as info:
        data_module(root, *overrides).setup("fit")
    message = str(info.value)
    assert "\n" not in message
    return message


# -- class lists, palettes, label maps ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (
            {"classes": ["a", "b"], "palette": [[1, 2, 3]]},
            ["data.palette has 1 colours", "2 names"],
        ),
        (
            {"classes": ["a", "b"], "palette": [[1, 2, 3], [1, 2, 3]]},
            ["[1, 2, 3] twice", "'a'", "'b'"],
        ),
        ({"classes": ["a", "b"], "label_map": {7: 2}}, ["data.label_map maps 7 to 2", "[0, 2)"]),
        ({"classes": ["a", "b"], "ignore_index": 1}, ["data.ignore_index=1", "'b'"]),
        ({"classes": ["a", "a"]}, ["'a' twice"]),
        ({"classes": ["a", "b"], "num_classes": 3}, ["data.num_classes=3", "2 names"]),
        ({"classes": ["a"], "palette": [[1, 2, 300]]}, ["data.palette", "0-255"]),
        ({"classes": ["a"], "label_map": {0: 0}, "reduce_zero_label": True}, ["both set"]),
    ],
)
def test_bad_class_config_is_one_line_naming_the_key(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        LabelSpec.from_config(**kwargs)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_classes_from_yaml_and_txt_files(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("sky\n\nroad\ncar\n")
    (tmp_path / "c.yaml").write_text("classes: [sky, road]\npalette: [[1, 1, 1], [2, 2, 2]]\n")
    assert LabelSpec.from_config(str(tmp_path / "c.txt")).names == ("sky", "road", "car")
    spec = LabelSpec.from_config("c.yaml", root=tmp_path)  # relative: under data.root
    assert spec.names == ("sky", "road") and spec.palette == ((1, 1, 1), (2, 2, 2))


def test_value_tables() -> None:
    plain = LabelSpec.from_config(["a", "b", "c"]).value_table()
    assert plain[:4].tolist() == [0, 1, 2, -1] and plain[255] == 255
    camvid = LabelSpec.from_config(["a", "b"], ignore_index=2).value_table()
    assert camvid[:3].tolist() == [0, 1, 255] and camvid[255] == -1
    ade = LabelSpec.from_config(["a", "b"], reduce_zero_label=True).value_table()
    assert ade[:4].tolist() == [255, 0, 1, -1]
    mapped = LabelSpec.from_config(["a", "b"], label_map={"7": 1, 8: None, 9: 0}).value_table()
    assert mapped[7:10].tolist() == [1, 255, 0] and mapped[0] == -1


def test_default_palette_is_distinct_and_the_voc_colormap() -> None:
    spec = LabelSpec.from_config([f"c{i}" for i in range(150)])
    assert len(set(spec.palette)) == 150 and list(spec.palette[:21]) == voc_colormap(21)


def test_no_class_name_lives_in_python() -> None:
    text = "\n".join(p.read_text() for p in (REPO / "fcn").rglob("*.py"))
    for name in ("aeroplane", "tv/monitor", "diningtable", "sidewalk", "windowpane"):
        assert name not in text


# -- bad input: one line, before training ------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return split_folder_tree(tmp_path / "data")


def test_images_without_masks_and_masks_without_images(tree: Path) -> None:
    for i in range(3):
        (tree / "masks" / "train" / f"s{i}.png").unlink()
    Image.new("L", (64, 64)).save(tree / "masks" / "train" / "orphan.png")
    message = setup_error(tree)
    assert "3 images without a mask" in message and "s0.png, s1.png, s2.png" in message
    assert "1 masks without an image" in message and "orphan.png" in message


def test_listed_stem_without_image(tmp_path: Path) -> None:
    root = stem_list_tree(tmp_path / "stems")
    (root / "images" / "train_1.jpg").unlink()
    message = setup_error(root, "data.train_split=train.txt", "data.val_split=val.txt")
    assert "1 pairs of split 'train.txt'" in message and "train_1.jpg" in message


@pytest.mark.parametrize("value,key", [(9, "data.label_map"), (200, "data.ignore_index")])
def test_unknown_mask_value_names_file_value_and_key(tree: Path, value: int, key: str) -> None:
    path = tree / "masks" / "train" / "s2.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[5, 5] = value
    save_index(path, mask)
    message = setup_error(tree)
    assert str(path) in message and f"[{value}]" in message and key in message


def test_label_map_names_itself_as_the_fix(tree: Path) -> None:
    message = setup_error(tree, "data.label_map={0:0,1:1,2:2}")
    assert "values [3]" in message and "add them to data.label_map" in message


def test_size_mismatch(tree: Path) -> None:
    path = tree / "masks" / "val" / "s1.png"
    Image.open(path).resize((60, 64)).save(path)
    message = setup_error(tree)
    assert str(path) in message and "64x60" in message


def test_empty_split_and_missing_split_folder(tree: Path) -> None:
    (tree / "images" / "empty").mkdir()
    (tree / "masks" / "empty").mkdir()
    assert "'empty'" in setup_error(tree, "data.train_split=empty")
    assert "data.train_split=nowhere" in setup_error(tree, "data.train_split=nowhere")


def test_unknown_rgb_colour_names_file_pixel_and_colour(tmp_path: Path) -> None:
    root = split_folder_tree(tmp_path / "rgb", rgb_masks=True)
    path = root / "masks" / "train" / "s3.png"
    rgb = np.asarray(Image.open(path)).copy()
    rgb[7, 9] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    message = setup_error(root, f"data.palette={PALETTE}", "data.void_color=[0,0,0]")
    assert str(path) in message and "(1, 2, 3)" in message and "(x=9, y=7)" in message


def test_bad_input_stops_fcn_train_before_training_with_exit_2(tree: Path, tmp_path: Path):
    (tree / "masks" / "val" / "s0.png").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "fcn.train", *FOLDER, f"data.root={tree}", "logger=none",
         f"hydra.run.dir={tmp_path / 'run'}", "trainer.accelerator=cpu"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: data.val_split=val: 1 images")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- fcn-data check / stats, class weights -----------------------------------------------------


def test_fcn_data_check_reports_every_problem_at_once(tree: Path, capsys) -> None:
    mask = tree / "masks" / "train" / "s1.png"
    values = np.asarray(Image.open(mask)).copy()
    values[0, 0] = 7
    save_index(mask, values)
    Image.open(tree / "masks" / "val" / "s0.png").resize((10, 10)).save(tree / "masks/val/s0.png")
    with pytest.raises(SystemExit) as info:
        fcn_data(["check", *FOLDER, f"data.root={tree}"])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "train" in out and "4 pairs" in out and "tree" in out  # pairs and classes present
    problems = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(problems) == 2 and "[7]" in problems[0] and "s0.png" in problems[1]


def test_fcn_data_check_passes_a_good_tree(tree: Path, capsys) -> None:
    fcn_data(["check", *FOLDER, f"data.root={tree}"])
    out = capsys.readouterr().out
    assert "every pair decodes" in out and "2 pairs" in out


def _numpy_counts(tree: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pixels, images, image_pixels = np.zeros(256), np.zeros(256), np.zeros(256)
    for path in sorted((tree / "masks" / split).glob("*.png")):
        counts = np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
        pixels += counts
        images += counts > 0
        image_pixels[counts > 0] += counts[:255].sum()
    return pixels, images, image_pixels


def test_fcn_data_stats_counts_and_caches_beside_the_data(tree: Path, capsys) -> None:
    fcn_data(["stats", *FOLDER, f"data.root={tree}"])
    out = capsys.readouterr().out
    pixels, images, _ = _numpy_counts(tree, "train")
    labelled = pixels[:4].sum()
    for c, name in enumerate(CLASSES):
        row = next(line for line in out.splitlines() if f" {name} " in line).split()
        assert float(row[2]) == pytest.approx(100 * pixels[c] / labelled, abs=1e-3)
        assert int(row[3]) == images[c]
    assert len(list((tree / ".fcn-stats").glob("*.json"))) == 2  # train and val
    fcn_data(["stats", *FOLDER, f"data.root={tree}"])
    assert capsys.readouterr().out == out


def test_class_weights_auto_are_median_frequency_of_train(tree: Path) -> None:
    pixels, _, image_pixels = _numpy_counts(tree, "train")
    freq = pixels[:4] / image_pixels[:4]
    expected = np.median(freq) / freq
    dm = data_module(tree)
    stats = scan(dm.dataset("train"))
    np.testing.assert_allclose(median_frequency_weights(stats, 4), expected, rtol=1e-5)
    from fcn.data.stats import resolve_class_weights

    assert resolve_class_weights("auto", dm) == pytest.approx(expected.tolist(), rel=1e-5)
    with pytest.raises(ConfigError, match="model.class_weights"):
        resolve_class_weights("often", dm)


def test_class_weights_reach_the_loss() -> None:
    from fcn.training.module import SegmentationModule

    module = SegmentationModule("resnet18", "fcn32s", 2, class_weights=[1.0, 3.0])
    logits = torch.randn(1, 2, 4, 4)
    target = torch.randint(0, 2, (1, 4, 4))
    expected = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor([1.0, 3.0]))
    got = torch.nn.functional.cross_entropy(logits, target, weight=module.class_weights)
    assert torch.equal(got, expected)
    with pytest.raises(ConfigError, match="model.class_weights"):
        SegmentationModule("resnet18", "fcn32s", 2, class_weights=[1.0])


# -- checkpoints carry the classes -------------------------------------------------------------


def test_pre_layout_checkpoint_keeps_its_names_and_gets_voc_colours(tmp_path: Path) -> None:
    from fcn import load_segmenter

    seg = load_segmenter(rebuild_old_checkpoint(tmp_path / "old.ckpt"))
    assert seg.classes == ["background", "disc", "square", "triangle", "ring", "cross"]
    assert list(seg.info.palette) == voc_colormap(6)


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained (briefly) on a 4-class folder dataset with its own palette."""
    from fcn.train import train

    tmp = tmp_path_factory.mktemp("folder_model")
    root = split_folder_tree(tmp / "data")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            [*FOLDER, f"data.root={root}", f"data.palette={PALETTE}", "data.crop_size=[64,64]",
             "data.batch_size=4", "data.persistent_workers=false", "trainer.accelerator=cpu",
             "trainer.max_steps=1", "trainer.limit_val_batches=1", "test_after_fit=false",
             "logger=none", "trainer.enable_progress_bar=false", f"paths.output_dir={tmp / 'run'}",
             f"paths.tracking_dir={tmp}"],
        )  # fmt: skip
    train(cfg)
    return tmp / "run" / "checkpoints" / "last.ckpt"


def test_folder_model_predicts_in_its_palette_with_no_data_config(folder_model, tmp_path):
    from fcn import load_segmenter
    from fcn.predict import predict

    images = tmp_path / "in"
    images.mkdir()
    Image.new("RGB", (70, 50), (30, 60, 220)).save(images / "a.png")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "predict",
            [f"ckpt_path={folder_model}", f"input={images}", f"output_dir={tmp_path / 'out'}",
             "device=cpu", "progress=false", "paths.output_dir=unused"],
        )  # fmt: skip
    assert "data" not in cfg
    [mask_path] = predict(cfg)
    png = Image.open(mask_path)
    assert png.mode == "P" and png.getpalette()[:12] == [v for rgb in PALETTE for v in rgb]
    seg = load_segmenter(folder_model)
    assert seg.classes == CLASSES
    mask = np.asarray(png)
    assert np.array_equal(seg.colorize(mask), np.asarray(png.convert("RGB")))
    assert set(np.unique(mask)) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_folder_model_exports_its_classes_and_palette(folder_model, tmp_path):
    import onnx

    from fcn.export import export

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "export",
            [f"ckpt_path={folder_model}", f"output={tmp_path / 'm.onnx'}",
             "check_sizes=[[64,64]]", "paths.output_dir=unused"],
        )  # fmt: skip
    export(cfg)
    meta = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES
    assert json.loads(meta["palette"]) == PALETTE
