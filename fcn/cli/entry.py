"""What every Hydra entry point shares: where the configs live, the process set-up, and the
one-line exit for bad input.

    @hydra_entry("eval")
    def main(cfg: DictConfig) -> None:
        evaluate(cfg)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from fcn.cli.known_warnings import ignore_known_warnings
from fcn.cli.resolvers import register_resolvers
from fcn.core.config_tree import config_dir
from fcn.core.errors import exit_on_user_error
from fcn.jobs.submitit_logs import quiet_submitit_logs


def prepare_process() -> None:
    """fcn's resolvers and resumable Optuna sweeper for the config files, and quiet for the
    dependency warnings a run cannot act on (fcn/cli/known_warnings.py) and for submitit's
    repeated lines (fcn/jobs/submitit_logs.py); safe to call again."""
    register_resolvers()
    with contextlib.suppress(ImportError):  # the sweeper's module imports optuna only to sweep
        from hydra_plugins.fcn_optuna_sweeper import register

        register()
    ignore_known_warnings()
    quiet_submitit_logs()


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Make `run(cfg)` a Hydra main on `conf/<config_name>.yaml` whose bad input (an FCNError)
    is one `error: ...` line on stderr and exit status 2 instead of Hydra's traceback.

    The config path is absolute, so the console scripts find it from any directory (Hydra
    resolves a relative one against the calling module's package, which has no `conf`)."""
    prepare_process()

    def decorate(run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(run)  # Hydra names the job after the wrapped function's module
        def task(cfg: DictConfig) -> Any:
            # Again here: a submitit job (hydra/launcher=slurm|local) runs this function
            # unpickled, without importing the entry module when it was `python -m`'s __main__.
            prepare_process()
            with exit_on_user_error():
                return run(cfg)

        return hydra.main(
            version_base="1.3", config_path=str(config_dir()), config_name=config_name
        )(task)

    return decorate
