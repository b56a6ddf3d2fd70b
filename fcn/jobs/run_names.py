"""Names for sweep job directories and logger runs that say what the job is.

A sweep job's directory is its number, then the overrides the sweep varies:
`0_head=fcn32s,optimizer.lr=0.01`. The number keeps names unique; the rest is deterministic
for a given command, so re-running a sweep finds its jobs' directories again. Which keys vary is
read from the sweep's own command line (`<sweep dir>/multirun.yaml`, written by Hydra's basic
sweeper before any job starts) and from the sweeper's search space (`hydra.sweeper.params`,
e.g. Optuna's). Keys that only locate files (data.root, ckpt_path, ...) stay out of names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

MAX_NAME_CHARS = 80
# Keys (or key prefixes ending in '.') that say where things are, not what the job is.
NOT_IN_NAMES = (
    "data.root",
    "paths.",
    "ckpt_path",
    "resume",
    "init_from",
    "backbone.weights_path",
    "data.num_workers",
    "trainer.enable_progress_bar",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+\-\[\]]+")


def job_dir_name(
    num: int,
    task_overrides: Iterable[str],
    sweep_dir: str | None = None,
    sweeper_params: Mapping | None = None,
) -> str:
    """`<num>_<key=value,...>` for the overrides this sweep varies (all of the job's overrides,
    less NOT_IN_NAMES, when that cannot be told); just `<num>` when it varies none (a sweep
    without a comma list)."""
    overrides = _parse(list(task_overrides))
    from_command = _swept_keys(sweep_dir)
    if from_command is None and not sweeper_params:
        shown = [o for o in overrides if not _locates(o.key_or_group)]
    else:
        swept = (from_command or set()) | set(sweeper_params or {})
        shown = [o for o in overrides if o.key_or_group in swept]
    body = ",".join(f"{o.key_or_group}={_short_value(o)}" for o in shown if not o.is_delete())
    return f"{num}_{safe_name(body)}" if body else str(num)


def run_name(output_dir: str) -> str:
    """A logger run's name: its directory's name (a sweep job's is `<num>_<overrides>`)."""
    return Path(str(output_dir)).name


def safe_name(text: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """`text` as one short file name: runs of other characters than letters, digits and
    `._,=+-[]` become '_'; a longer name is cut and ends in a hash of the whole."""
    name = _UNSAFE.sub("_", text)
    if len(name) <= max_chars:
        return name
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{name[: max_chars - 9]}~{digest}"


def _locates(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in NOT_IN_NAMES)


def _parse(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def _swept_keys(sweep_dir: str | None) -> set[str] | None:
    """Keys given several values on the sweep's command line (basic sweeper); None when the
    command line cannot be read."""
    if not sweep_dir:
        return None
    saved = Path(str(sweep_dir)) / "multirun.yaml"
    try:
        task = yaml.safe_load(saved.read_text())["hydra"]["overrides"]["task"]
        return {o.key_or_group for o in _parse(list(task)) if o.is_sweep_override()}
    except (OSError, KeyError, TypeError, yaml.YAMLError, ValueError):
        return None  # no such file (another sweeper) or not readable: name by all overrides


def _short_value(override) -> str:
    """The value as given (strings unquoted), long floats (Optuna's samples) at 4 digits."""
    text = override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, str):
        return value
    if isinstance(value, float) and len(text) > 8:
        return f"{value:.4g}"
    return text
