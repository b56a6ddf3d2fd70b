"""`hparams_search=optuna` that continues: the study lives in the sweep directory (SQLite), and
running the same command again with `hydra.sweep.dir=<that sweep>` finishes the search instead
of starting a second one.

hydra-optuna-sweeper 1.3 loads an existing study (load_if_exists) but then runs `n_trials` *more*
trials, numbers its jobs from 0 again (job dirs of earlier trials get reused) and leaves a trial
that was running when the search was killed as RUNNING for ever. Before handing over to it, this
sweeper:

1. creates the SQLite file's folder (the launcher makes the sweep dir only later);
2. runs each RUNNING trial of the loaded study again with its own parameters, as job number
   `trial.number` (so in its own job dir, where fcn.train resumes from last.ckpt), and tells the
   study its result;
3. asks the plugin for `n_trials` minus the trials the study already has, numbered on from there,
   with the sampler seeded `seed + <trials so far>` (the same seed would draw the first trials'
   parameters again).

Hydra builds sweepers only from classes under the `hydra_plugins` namespace: this package is
installed as `hydra_plugins.fcn_optuna_sweeper` (pyproject's package-dir) while its source stays
inside fcn/. An editable install is not scanned by Hydra, so fcn.train also calls `register()`
(Hydra's public `Plugins.register`). optuna itself is imported only in `sweep`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


def register() -> None:
    """Make the sweeper known to Hydra where its plugin scan does not see it (editable install)."""
    Plugins.instance().register(ResumableOptunaSweeper)


class ResumableOptunaSweeper(OptunaSweeper):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self._sampler_config = config.hydra.sweeper.sampler
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        # The plugin's OptunaSweeperImpl keeps its settings as attributes (n_trials, job_idx,
        # storage, study_name, launcher); they are what this class adjusts.
        impl = self.sweeper
        _make_sqlite_folder(impl.storage)
        study = _load_study(impl.study_name, impl.storage)
        if study is not None:
            _finish_interrupted_trials(impl, study, arguments)
            have = len(study.get_trials(deepcopy=False))
            log.info(
                f"Study {impl.study_name} has {have} trials; running "
                f"{max(0, impl.n_trials - have)} more of hydra.sweeper.n_trials={impl.n_trials}"
            )
            impl.n_trials = max(0, impl.n_trials - have)
            impl.job_idx = have
            _reseed(impl, self._sampler_config, have)
        return impl.sweep(arguments)


def _reseed(impl: Any, sampler_config: Any, offset: int) -> None:
    """A seeded sampler, continued: seed + offset, so it does not repeat the first draws."""
    from hydra.utils import instantiate

    target = str(sampler_config.get("_target_", ""))
    if sampler_config.get("seed") is None or target.endswith("GridSampler"):
        return
    impl.sampler = instantiate(sampler_config, seed=int(sampler_config.seed) + offset)


def _make_sqlite_folder(storage: Any) -> None:
    url = str(storage or "")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _parameter_order(impl: Any, arguments: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The searched keys in order and the fixed values, parsed as the plugin's sweep() does."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    params_conf = [f"{k!s}={v}" for k, v in (impl.params or {}).items()] + list(arguments)
    search_space, fixed = create_params_from_overrides(params_conf)
    return [k for k in search_space if k not in fixed], fixed


def _load_study(name: str | None, storage: Any):
    if not storage or not name:
        return None
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # no such study yet
        return None


def _finish_interrupted_trials(impl: Any, study: Any, arguments: list[str]) -> None:
    """Run the trials a killed search left RUNNING again (same parameters, same job number)."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return
    search_space, fixed = _parameter_order(impl, arguments)
    for trial in running:
        # The overrides as the plugin's _configure_trials wrote them: the searched keys in
        # its order (the storage returns them sorted), then the fixed ones.
        params = {k: trial.params[k] for k in search_space if k in trial.params}
        params.update({k: v for k, v in trial.params.items() if k not in params})
        params.update(fixed)
        overrides = [tuple(f"{name}={value}" for name, value in params.items())]
        log.info(f"Trial {trial.number} was interrupted: running it again ({overrides[0]})")
        (ret,) = impl.launcher.launch(overrides, initial_job_idx=trial.number)
        try:
            study.tell(trial.number, float(ret.return_value))
        except Exception as err:  # as the plugin does: a failed job is a failed trial
            log.warning(f"Trial {trial.number} failed: {err}")
            study.tell(trial.number, state=TrialState.FAIL)
