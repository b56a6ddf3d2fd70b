"""Evaluating a checkpoint on data with another class count says which `data=` to add, and
that option has the checkpoint's classes: following the hint never leads to another error
(it used to suggest `data.num_classes=21`, which the synthetic data refuses)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fcn.core.config_tree import config_dir, data_options_with
from fcn.deploy.model_data import _data_hint


def eval_data_classes(option: str) -> int | None:
    """How many classes fcn-eval's `data=<option>` names (None: the option names none)."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("eval", [f"data={option}", "paths.output_dir=unused"])
    classes = cfg.data.get("classes")
    return len(classes) if classes is not None and not isinstance(classes, str) else None


@pytest.mark.parametrize("num_classes", [6, 21])
def test_the_hint_names_options_that_have_the_models_classes(num_classes):
    hint = _data_hint(num_classes)
    options = re.findall(r"data=(\w+)", hint)
    assert options and "data.num_classes" not in hint, hint
    for option in options:
        assert eval_data_classes(option) == num_classes, (option, hint)


def test_every_data_option_is_found_by_its_class_count():
    counted = 0
    for path in sorted(Path(config_dir(), "data").glob("*.yaml")):
        count = eval_data_classes(path.stem)
        if count is not None:  # data=folder: the user names the classes
            assert path.stem in data_options_with(count), path.stem
            counted += 1
    assert counted >= 4  # synthetic, voc, voc_aug, cityscapes, ade20k


def test_no_option_with_that_count_asks_for_the_training_data():
    assert _data_hint(13) == (
        "add the data= it was trained on (its data.num_classes=13) with data.root=DIR"
    )
