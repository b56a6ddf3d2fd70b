"""`hydra.sweeper.params` and the command line's sweeps as Optuna distributions.

The syntax is Hydra's override grammar, as hydra-optuna-sweeper read it:
`tag(log, interval(1e-4, 1e-1))` (float; int when both ends are ints; `log` samples in log
space), `choice(4, 8, 16)`, `range(1, 5)`; a plain value is fixed for every trial. Bad input
(an empty or inverted interval, a key the composed config does not have) is one line, before
any job starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import DictConfig, OmegaConf

from fcn.core.errors import ConfigError


def parse_search_space(
    params: Mapping[str, Any] | None, arguments: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """(searched key -> optuna distribution, in order; the fixed overrides, as given)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    given = [f"{k}={v}" for k, v in _flat(params or {})] + list(arguments)
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(given):
        key, value = override.get_key_element(), override.value()
        if isinstance(value, IntervalSweep):
            lo, hi, log = value.start, value.end, "log" in (value.tags or set())
            if lo is None or hi is None or not lo < hi or (log and lo <= 0):
                why = " or not positive (log)" if log else ""
                raise ConfigError(
                    f"hydra.sweeper.params.{key}: interval({lo}, {hi}) is empty or inverted"
                    f"{why}; give interval(low, high), low < high"
                )
            both_int = isinstance(lo, int) and isinstance(hi, int)
            kind = IntDistribution if both_int else FloatDistribution
            space[key] = kind(lo, hi, log=log)
        elif isinstance(value, ChoiceSweep):
            space[key] = CategoricalDistribution(list(value.list))
        elif isinstance(value, RangeSweep):
            space[key] = CategoricalDistribution(list(override.sweep_iterator()))
        else:
            space.pop(key, None)  # the command line fixes a key the search space varies
            fixed.append(str(override.input_line))
    for key in space:
        if key in {f.split("=", 1)[0].lstrip("+~") for f in fixed}:
            raise ConfigError(f"hydra.sweeper.params.{key}: both searched and fixed")
    return space, fixed


def check_keys_exist(space: Mapping[str, Any], config: DictConfig) -> None:
    """Every searched key names a value of the composed config (a typo would search nothing)."""
    for key in space:
        bare = key.lstrip("+")
        if key.startswith("+") or bare.startswith("hydra."):
            continue
        if OmegaConf.select(config, bare, default=_MISSING) is _MISSING and bare not in _groups(
            config
        ):
            raise ConfigError(
                f"hydra.sweeper.params.{bare}: no such key in the composed config; "
                "check its spelling (python -m fcn.train --cfg job shows the keys)"
            )


_MISSING = object()


def _flat(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """`optimizer.lr: ...` as written in a file, or nested as a command line's
    `+hydra.sweeper.params.optimizer.lr=...` makes it."""
    out = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _groups(config: DictConfig) -> set[str]:
    """Config groups chosen on the command line or in defaults (e.g. `head`, `backbone`)."""
    try:
        return set(config.hydra.runtime.choices.keys())
    except Exception:
        return set()
