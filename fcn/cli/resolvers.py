"""OmegaConf resolvers the config files use (registered by every entry point on import)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from fcn.cli.help import entry_help
from fcn.jobs.run_names import job_dir_name, run_name


def class_count(num_classes: Any, classes: Any, root: Any = None) -> int | None:
    """`model.num_classes` from the data config: `data.num_classes` if set, else the length of
    `data.classes` (a list, or a file of names); None when the data names no classes."""
    if num_classes is not None:
        return num_classes
    if classes is None:
        return None
    if isinstance(classes, str):
        from fcn.data.labels import read_class_file  # deferred: the config tree needs no numpy

        return len(read_class_file(classes, root)[0])
    return len(classes)


def register_resolvers() -> None:
    """`${fcn.job_dir:...}` (sweep job directory names), `${fcn.run_name:...}` (logger run
    names), `${fcn.help:...}` (--help) and `${fcn.num_classes:...}` (the data's class count);
    safe to call again."""
    OmegaConf.register_new_resolver("fcn.job_dir", job_dir_name, replace=True)
    OmegaConf.register_new_resolver("fcn.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("fcn.help", entry_help, replace=True)
    OmegaConf.register_new_resolver("fcn.num_classes", class_count, replace=True)
