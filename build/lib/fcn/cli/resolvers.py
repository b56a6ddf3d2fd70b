"""OmegaConf resolvers the config files use (registered by every entry point on import)."""

from __future__ import annotations

from omegaconf import OmegaConf

from fcn.cli.help import entry_help
from fcn.jobs.run_names import job_dir_name, run_name


def register_resolvers() -> None:
    """`${fcn.job_dir:...}` (sweep job directory names), `${fcn.run_name:...}` (logger run
    names) and `${fcn.help:...}` (--help); safe to call again."""
    OmegaConf.register_new_resolver("fcn.job_dir", job_dir_name, replace=True)
    OmegaConf.register_new_resolver("fcn.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("fcn.help", entry_help, replace=True)
