"""`hparams_search=optuna`: asynchronous Optuna workers over one shared study.

`hydra.sweeper.n_jobs=N` launches N worker jobs through the configured launcher (submitit
`local` processes or `slurm` jobs); each asks the study for a trial, trains it, tells the result
and asks again (fcn/jobs/optuna_worker.py), so no worker waits for another's slow trial, as
Hydra's batch-wise Optuna sweeper makes them. The study lives in the sweep directory (journal
file; or `hydra.sweeper.storage=<RDB URL>`). Running the same command again with
`hydra.sweep.dir=<sweep>` finishes the search: trials a killed search left RUNNING are retried
with their parameters in their own job directories (from their last.ckpt).

Bad input stops here, one line, before any job starts: a searched key the composed config lacks,
an empty or inverted interval, an unwritable storage path, n_jobs > n_trials.

Hydra builds sweepers only from classes under the `hydra_plugins` namespace: this package is
installed as `hydra_plugins.fcn_optuna_sweeper` (pyproject's package-dir) while its source stays
inside fcn/. An editable install is not scanned by Hydra, so the entry points also call
`register()` (Hydra's public `Plugins.register`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig

from fcn.core.atomic import write_text_atomic
from fcn.core.errors import ConfigError, exit_on_user_error
from fcn.jobs.optuna_study import done_count, load_study, make_pruner, retry_orphans
from fcn.jobs.optuna_worker import TrialWorker
from fcn.jobs.search_space import check_keys_exist, parse_search_space
from fcn.jobs.study_report import write_study_file

log = logging.getLogger(__name__)


def register() -> None:
    """Make the sweeper known to Hydra where its plugin scan does not see it (editable install)."""
    Plugins.instance().register(AsyncOptunaSweeper)


class AsyncOptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any = None,
        direction: str = "maximize",
        study_name: str = "fcn_val_mIoU",
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        pruner: str = "none",
        stale_after_s: float = 120.0,
        params: DictConfig | None = None,
    ) -> None:
        self.sampler = sampler
        self.direction = str(direction)
        self.study_name = study_name
        self.storage = storage
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.pruner = str(pruner)
        self.stale_after_s = float(stale_after_s)
        self.params = params

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config
        # Hydra hands the sweeper an instantiated sampler; workers need its config (own seeds).
        self.sampler = config.hydra.sweeper.get("sampler")

    def _check(self, arguments: list[str]) -> tuple[dict, list[str]]:
        if self.n_trials < 1 or self.n_jobs < 1:
            raise ConfigError("hydra.sweeper.n_trials and n_jobs: give 1 or more")
        if self.n_jobs > self.n_trials:
            raise ConfigError(
                f"hydra.sweeper.n_jobs={self.n_jobs} > n_trials={self.n_trials}: the extra "
                f"workers would have nothing to run; give n_jobs <= {self.n_trials}"
            )
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={self.direction}: maximize or minimize")
        if not self.storage:
            raise ConfigError("hydra.sweeper.storage: give a journal file path or an RDB URL")
        make_pruner(self.pruner)
        if self.stale_after_s <= 0:
            raise ConfigError("hydra.sweeper.stale_after_s: give seconds > 0 (default 120)")
        space, fixed = parse_search_space(self.params, arguments)
        check_keys_exist(space, self.config)
        return space, fixed

    def sweep(self, arguments: list[str]) -> Any:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        with exit_on_user_error():  # bad input: one line, exit 2, before any job starts
            space, fixed = self._check(arguments)
            study = load_study(str(self.storage), self.study_name, self.direction)
        write_study_file(sweep_dir, str(self.storage), self.study_name, n_trials=self.n_trials)
        for number in retry_orphans(study):
            log.info(f"trial {number} was interrupted: retried with its parameters and job dir")
        done = done_count(study)
        if done >= self.n_trials:
            log.info(f"study {self.study_name} has its {self.n_trials} trials; nothing to run")
            return []
        workers = min(self.n_jobs, self.n_trials - done)
        log.info(
            f"study {self.study_name}: {done} of {self.n_trials} trials done; "
            f"{workers} workers, pruner={self.pruner}, storage={self.storage}"
        )
        worker = TrialWorker(
            hydra_context=self.hydra_context,
            base_config=self.config,
            task_function=self.task_function,
            space=space,
            fixed=fixed,
            settings={
                "storage": str(self.storage),
                "study_name": self.study_name,
                "direction": self.direction,
                "pruner": self.pruner,
                "stale_after_s": self.stale_after_s,
                "n_trials": self.n_trials,
                "sampler": self.sampler,
                "sweep_dir": str(sweep_dir),
            },
        )
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=worker, config=self.config
        )
        jobs = [(*fixed, f"hydra.sweep.subdir=.workers/{i}") for i in range(workers)]
        returns = launcher.launch(jobs, initial_job_idx=0)
        for i, ret in enumerate(returns):
            if ret.status.name != "COMPLETED":
                log.warning(f"worker {i} ended early: {ret._return_value!r}")
        study = load_study(str(self.storage), self.study_name, self.direction)
        log.info(f"study {self.study_name}: {done_count(study)} of {self.n_trials} trials done")
        _write_best(sweep_dir, study)
        return returns


def _write_best(sweep_dir: Path, study: Any) -> None:
    """`optimization_results.yaml`, as hydra-optuna-sweeper wrote it: best_params, best_value."""
    import yaml
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    best = {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}
    write_text_atomic(sweep_dir / "optimization_results.yaml", yaml.safe_dump(best))
