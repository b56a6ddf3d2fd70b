"""`fcn-data check` and `fcn-data stats` for any data config, with the trainer's Hydra overrides:

    fcn-data check data=folder data.root=DATA data.classes=[road,car,void_ish]
    fcn-data stats data=cityscapes data.root=DATA/cityscapes

`check` decodes every pair of the train, val and test splits as the loaders will and reports
pairs per split, the classes present and every problem at once (exit status 2 if any);
`stats` prints per-class pixel and image frequencies per split (cached beside the data).
"""

from __future__ import annotations

import sys

from hydra.utils import instantiate
from omegaconf import DictConfig

from fcn.core.errors import DataError
from fcn.data.stats import SplitStats, cached_stats, format_stats, scan


def _splits(datamodule) -> list[str]:
    """train and val, and test where it is another split."""
    return ["train", "val"] + (["test"] if datamodule.test_split != datamodule.val_split else [])


def _datamodule(data: DictConfig):
    datamodule = instantiate(data)
    datamodule.prepare_data()  # generates synthetic data if asked
    return datamodule


def check(data: DictConfig) -> int:
    """Print the report for the `data` config node; returns the exit status (2 when there are
    problems)."""
    datamodule = _datamodule(data)
    reports: list[SplitStats] = []
    problems: list[str] = []
    for which in _splits(datamodule):
        try:
            dataset = datamodule.dataset(which)
        except DataError as err:  # the split's files do not pair up, or it is not there
            problems.append(str(err))
            continue
        stats = scan(dataset, progress=sys.stderr.isatty())
        stats.split = which if stats.split == which else f"{which} ({stats.split})"
        reports.append(stats)
        problems += stats.problems
    names = datamodule.class_names
    print(
        f"data.root={datamodule.data_root} ({datamodule.layout} layout), "
        f"{len(names)} classes, {datamodule.labels.describe()} in the masks"
    )
    for r in reports:
        print(f"  {r.split:<16} {r.num_pairs:>8,} pairs")
    if reports:
        print()
        print(format_stats(reports, names))
        train = [r for r in reports if r.split.startswith("train")]
        absent = [n for i, n in enumerate(names) if train and not train[0].pixels[i]]
        if absent:
            print(f"classes absent from train: {', '.join(absent)}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problems (listed above)", file=sys.stderr)
        return 2
    print("every pair decodes, sizes match, every mask value is a class or void")
    return 0


def stats(data: DictConfig) -> None:
    """Per-class pixel and image frequencies per split of the `data` config node (computed
    once, then cached)."""
    datamodule = _datamodule(data)
    reports = []
    for which in _splits(datamodule):
        dataset = datamodule.dataset(which)
        report = cached_stats(dataset, datamodule.data_root, progress=True)
        report.split = which
        reports.append(report)
    print(format_stats(reports, datamodule.class_names))
