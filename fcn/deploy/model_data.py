"""The data a trained model is scored on: the data config, checked against the classes the
model carries (and taking them where the config names none)."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fcn.core.config_tree import data_options_with
from fcn.core.errors import ConfigError
from fcn.deploy.model_info import ModelInfo


def data_for_model(
    data_cfg: DictConfig | dict, info: ModelInfo, source: str, split: str, **overrides: Any
):
    """Instantiate the datamodule of `data_cfg` for a model whose file `source` carries `info`,
    its test split set to `split` (`train`, `val`, `test`: the data config's own
    `data.<split>_split`, e.g. a list file; any other name as it is).

    A config without classes (`data.classes` and `data.num_classes` null, as `data=folder`
    leaves them) reads its masks with the model's classes and colours; a config with classes
    must name the model's, in its order.
    """
    if isinstance(data_cfg, DictConfig):
        cfg = OmegaConf.to_container(data_cfg, resolve=True)
    else:
        cfg = dict(data_cfg)
    if cfg.get("classes") is None and cfg.get("num_classes") is None:
        cfg["classes"] = list(info.class_names)
        if cfg.get("palette") is None:
            cfg["palette"] = [list(rgb) for rgb in info.palette]
    if split in ("train", "val", "test"):
        split = cfg.get(f"{split}_split") or split
    datamodule = instantiate({**cfg, **overrides, "test_split": split})
    if datamodule.num_classes != info.num_classes:
        raise ConfigError(
            f"data.num_classes={datamodule.num_classes} but model={source} predicts "
            f"{info.num_classes} classes: {_data_hint(info.num_classes)}"
        )
    theirs, ours = list(datamodule.class_names), list(info.class_names)
    if theirs != ours:
        k = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
        raise ConfigError(
            f"data.classes names class {k} {theirs[k]!r} but model={source} calls it "
            f"{ours[k]!r}: use the data config the model was trained with, or set "
            f"data.classes=null to read the masks with the model's classes"
        )
    return datamodule


def _data_hint(num_classes: int) -> str:
    """Which `data=` to add: one that has the model's classes (the checkpoint does not record
    its data config), never only `data.num_classes`, which the synthetic data refuses."""
    options = data_options_with(num_classes)
    if not options:
        return (
            f"add the data= it was trained on (its data.num_classes={num_classes}) "
            "with data.root=DIR"
        )
    picks = [o if o == "synthetic" else f"{o} data.root=DIR" for o in options]
    return f"add the data it was trained on: data={' or data='.join(picks)}"
