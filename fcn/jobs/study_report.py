"""The Optuna part of `fcn-report <sweep>` for an `hparams_search=optuna` sweep: the trials
table (number, state, parameters, value, epochs reached, wall, worker), the best trial with its
checkpoint and the command that reproduces it, each worker's timeline (and its idle time while
trials remained), and Optuna's matplotlib plots: study_history.png, study_importances.png
(PED-ANOVA: no scikit-learn), study_parallel.png.

The sweeper writes `<sweep>/study.json` (storage and study name), which is how a sweep
directory is known to hold a study.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fcn.core.atomic import write_text_atomic
from fcn.jobs.job_record import read_result
from fcn.jobs.optuna_study import JOB_NUM, open_storage
from fcn.jobs.optuna_worker import WORKER

STUDY_FILE = "study.json"
PLOTS = ("study_history.png", "study_importances.png", "study_parallel.png")


def write_study_file(sweep_dir: Path, storage: str, study_name: str, **extra: Any) -> None:
    info = {"storage": storage, "study_name": study_name, **extra}
    write_text_atomic(sweep_dir / STUDY_FILE, json.dumps(info, indent=1) + "\n")


def load_sweep_study(sweep_dir: Path) -> Any | None:
    path = sweep_dir / STUDY_FILE
    if not path.is_file():
        return None
    import optuna

    info = json.loads(path.read_text())
    return optuna.load_study(study_name=info["study_name"], storage=open_storage(info["storage"]))


def job_dir(sweep_dir: Path, trial: Any) -> Path | None:
    num = trial.user_attrs.get(JOB_NUM, trial.number)
    found = sorted(p for p in sweep_dir.glob(f"{num}_*") if p.is_dir())
    found += [sweep_dir / str(num)] if (sweep_dir / str(num)).is_dir() else []
    return found[0] if found else None


def _wall(trial: Any) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def study_markdown(sweep_dir: Path, study: Any) -> str:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    lines = ["", f"## Optuna study {study.study_name} ({len(trials)} trials)", ""]
    header = ["trial", "state", *keys, "value", "epochs", "wall s", "worker"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in trials:
        value = "—" if t.value is None else f"{t.value:.4f}"
        wall = _wall(t)
        retry = f" (retries {t.user_attrs['retry_of']})" if "retry_of" in t.user_attrs else ""
        cells = [
            f"{t.number}{retry}",
            t.state.name,
            *(_fmt(t.params.get(k)) for k in keys),
            value,
            str(len(t.intermediate_values)),
            "—" if wall is None else f"{wall:.1f}",
            str(t.user_attrs.get(WORKER, "—")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        run = job_dir(sweep_dir, best)
        record = read_result(run) if run else None
        lines += ["", f"Best: trial {best.number}, value {best.value:.4f}"]
        if record:
            args = [o for o in record.get("overrides", []) if not o.startswith("hparams_search=")]
            lines.append(f"- checkpoint: {record.get('checkpoint')}")
            lines.append(f"- run dir: {run}")
            lines.append(f"- reproduce: `python -m fcn.train {' '.join(args)}`")
    lines += ["", "### Timeline (seconds from the first trial's start)", ""]
    lines += timeline_lines(trials)
    return "\n".join(lines) + "\n"


def timeline_lines(trials: list[Any]) -> list[str]:
    """Per worker: its trials' start-end, and the time it spent between trials before the
    last trial was asked for (idle while trials remained)."""
    timed = [t for t in trials if t.datetime_start is not None]
    if not timed:
        return ["(no trial started)"]
    t0 = min(t.datetime_start for t in timed)
    last_start = max(t.datetime_start for t in timed)
    by_worker: dict[Any, list[Any]] = {}
    for t in sorted(timed, key=lambda t: t.datetime_start):
        by_worker.setdefault(t.user_attrs.get(WORKER, "?"), []).append(t)
    lines = []
    for worker, own in sorted(by_worker.items(), key=lambda kv: str(kv[0])):
        spans, idle = [], 0.0
        for prev, t in zip([None, *own], own):
            if prev is not None and prev.datetime_complete is not None:
                if t.datetime_start <= last_start:
                    idle += max(0.0, _since(prev.datetime_complete, t.datetime_start))
            end = "…" if t.datetime_complete is None else f"{_since(t0, t.datetime_complete):.1f}"
            spans.append(f"#{t.number} {_since(t0, t.datetime_start):.1f}-{end} {t.state.name}")
        lines.append(f"- worker {worker}: {', '.join(spans)}; idle between trials {idle:.2f} s")
    return lines


def _since(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def study_plots(sweep_dir: Path, study: Any) -> list[Path]:
    """Optuna's matplotlib history, importances and parallel coordinates, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as vis

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    makers = [("study_history.png", lambda: vis.plot_optimization_history(study))]
    if len(complete) >= 2:
        ped_anova = optuna.importance.PedAnovaImportanceEvaluator()
        importances = lambda: vis.plot_param_importances(study, evaluator=ped_anova)  # noqa: E731
        makers.append(("study_importances.png", importances))
        makers.append(("study_parallel.png", lambda: vis.plot_parallel_coordinate(study)))
    written = []
    for name, make in makers:
        ax = make()
        fig = ax.figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(sweep_dir / name, dpi=110)
        plt.close(fig)
        written.append(sweep_dir / name)
    return written
