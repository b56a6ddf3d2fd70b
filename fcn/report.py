"""`fcn-report <sweep dir>` (or `python -m fcn.report <sweep dir>`): one table for a sweep.

Reads every job's `result.json` (fcn/jobs/job_record.py), groups the jobs by the swept keys
other than `seed` (the keys whose value differs between jobs), and reports each final metric as
mean ± sample std (ddof=1) over the group's finished jobs, with n, best group first. Writes
`report.csv`, `report.md` and `report.png` (bar chart with error bars) into the sweep dir.
Jobs that failed, were interrupted or are still running are listed as such, not dropped.
An `hparams_search=optuna` sweep adds its study: trials, best trial, worker timeline and
Optuna's plots (fcn/jobs/study_report.py).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcn.core.errors import ConfigError, exit_on_user_error
from fcn.jobs.job_record import RESULT_FILE, read_result
from fcn.jobs.study_report import load_sweep_study, study_markdown, study_plots

PRIMARY = "best_val_mIoU"
# shown when present; report.csv has the same columns (result.json holds more)
METRICS = (
    PRIMARY,
    "test/mIoU",
    "test/pixel_acc",
    "test/mean_acc",
    "test/fwIoU",
    "test/loss",
    "val/loss",
)
SEED_KEYS = ("seed",)


@dataclass
class Job:
    path: Path
    status: str
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


@dataclass
class Group:
    keys: dict[str, str]
    jobs: list[Job]

    def values(self, metric: str) -> list[float]:
        return [j.metrics[metric] for j in self.jobs if j.metrics.get(metric) is not None]

    def stats(self, metric: str) -> tuple[float, float, int]:
        """(mean, sample std, n); std is NaN for n < 2, mean NaN for n == 0."""
        values = np.asarray(self.values(metric), dtype=np.float64)
        if values.size == 0:
            return math.nan, math.nan, 0
        std = float(values.std(ddof=1)) if values.size > 1 else math.nan
        return float(values.mean()), std, int(values.size)


def find_jobs(sweep_dir: Path) -> list[Job]:
    """Every job directory Hydra made under the sweep (any subdir naming), with its record."""
    dirs = {p.parent for p in sweep_dir.rglob(RESULT_FILE)}
    dirs |= {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    jobs = []
    # .workers/: an Optuna search's worker jobs (their trials are jobs of their own)
    for path in sorted(d for d in dirs if not {".submitit", ".workers"} & set(d.parts)):
        record = read_result(path)
        if record is None:  # started by Hydra, fcn.train not (yet) running in it
            jobs.append(Job(path, "not started", _overrides(_hydra_overrides(path))))
            continue
        metrics = {k: float(v) for k, v in (record.get("metrics") or {}).items() if v is not None}
        jobs.append(
            Job(
                path,
                record["status"],
                _overrides(record.get("overrides", [])),
                metrics,
                record.get("error", ""),
            )
        )
    return jobs


def _hydra_overrides(job_dir: Path) -> list[str]:
    import yaml

    path = job_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def _overrides(items: list[str]) -> dict[str, str]:
    pairs = (str(o).split("=", 1) for o in items if "=" in str(o))
    return {k.lstrip("+~"): v for k, v in pairs}


def swept_keys(jobs: list[Job]) -> list[str]:
    """Keys whose value differs between jobs, in command-line order, seed left out."""
    keys: dict[str, None] = {}
    for job in jobs:
        keys.update(dict.fromkeys(job.overrides))
    return [k for k in keys if k not in SEED_KEYS and len({j.overrides.get(k) for j in jobs}) > 1]


def group_jobs(jobs: list[Job], metric: str = PRIMARY) -> tuple[list[Group], list[str]]:
    """Groups of finished jobs, best mean `metric` first, and the keys they are grouped by."""
    keys = swept_keys(jobs)
    groups: dict[tuple, Group] = {}
    for job in jobs:
        if job.status != "finished":
            continue
        values = {k: job.overrides.get(k, "") for k in keys}
        groups.setdefault(tuple(values.values()), Group(values, [])).jobs.append(job)

    def order(group: Group) -> float:
        mean = group.stats(metric)[0]
        return -mean if not math.isnan(mean) else math.inf

    return sorted(groups.values(), key=order), keys


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f} ± —"


def write_report(sweep_dir: Path, metric: str = PRIMARY) -> str:
    """Write report.csv/.md/.png into `sweep_dir`; return the Markdown text."""
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise ConfigError(
            f"{sweep_dir}: no jobs in it (no result.json or .hydra/overrides.yaml); "
            "pass a sweep directory such as outputs/multirun/<date>/<time>"
        )
    groups, keys = group_jobs(jobs, metric)
    metrics = [m for m in dict.fromkeys((metric, *METRICS)) if any(g.values(m) for g in groups)]

    header = [*keys, "n", *metrics]
    rows = [
        [*g.keys.values(), str(g.stats(metric)[2]), *(_cell(*g.stats(m)[:2]) for m in metrics)]
        for g in groups
    ]
    lines = [f"# Sweep report: {sweep_dir}", ""]
    lines.append(
        f"{len(jobs)} jobs, grouped by {', '.join(keys) or '(nothing swept but seed)'}; "
        f"mean ± sample std (ddof=1) over each group's finished jobs, best {metric} first."
    )
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    unfinished = [j for j in jobs if j.status != "finished"]
    if unfinished:
        lines += ["", "## Not finished", ""]
        for job in unfinished:
            shown = [k for k in (*keys, *SEED_KEYS) if k in job.overrides]
            what = " ".join(f"{k}={job.overrides[k]}" for k in shown)
            error = f": {job.error}" if job.error else ""
            status = "running (or killed)" if job.status == "running" else job.status
            lines.append(f"- {status}: {what} ({job.path.relative_to(sweep_dir)}){error}")
    markdown = "\n".join(lines) + "\n"
    study = load_sweep_study(sweep_dir)
    if study is not None:
        markdown += study_markdown(sweep_dir, study)
        plots = study_plots(sweep_dir, study)
        markdown += "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in plots)

    (sweep_dir / "report.md").write_text(markdown)
    with (sweep_dir / "report.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std", "n"))])
        for g in groups:
            stats = [g.stats(m) for m in metrics]
            writer.writerow([*g.keys.values(), g.stats(metric)[2], *(x for s in stats for x in s)])
    _plot(groups, [m for m in metrics if m in (metric, "test/mIoU")], sweep_dir / "report.png")
    return markdown


def _plot(groups: list[Group], metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["\n".join(f"{k}={v}" for k, v in g.keys.items()) or "all" for g in groups] or [
        "(none finished)"
    ]
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(metrics))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(labels) + 2), 4.2))
    top = 0.0
    for i, metric in enumerate(metrics):
        stats = [g.stats(metric) for g in groups]
        means = np.array([s[0] for s in stats])
        errors = np.array([0.0 if math.isnan(s[1]) else s[1] for s in stats])
        offset = x[: len(stats)] + (i - (len(metrics) - 1) / 2) * width
        ax.bar(offset, means, width, yerr=errors, capsize=4, label=metric)
        for xi, mean, err, (_, _, n) in zip(offset, means, errors, stats):
            ax.annotate(
                f"{mean:.3f}\nn={n}",
                (xi, mean + err),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )
        top = max([top, *(means + errors)])
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("mean ± sample std (ddof=1)")
    ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.set_title(f"{path.parent.name}: over the seeds of each group", fontsize=10)
    if metrics:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fcn-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (hydra.sweep.dir)")
    parser.add_argument("--metric", default=PRIMARY, help=f"sort key (default {PRIMARY})")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if not args.sweep_dir.is_dir():
            raise ConfigError(f"{args.sweep_dir}: no such sweep directory")
        markdown = write_report(args.sweep_dir, args.metric)
    print(markdown, end="")
    print(f"wrote report.csv, report.md, report.png in {args.sweep_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
