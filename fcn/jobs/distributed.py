"""DDP under Hydra: rank processes that rerun the job's own config.

Lightning's `ddp` strategy starts ranks 1..N-1 by rerunning the current command line
(`_hydra_subprocess_cmd` in lightning/fabric/strategies/launchers/subprocess_script.py). Under
Hydra that command line may still hold `-m` (every rank then starts a sweep of its own:
Lightning issue 11300, Hydra issue 2070) or interpolations that re-resolve differently (a new
`${now:}` run directory). `install_hydra_ddp_launcher()` replaces that one function, so ranks run
the config Hydra saved for *this job*, in *this job's* directory:

    python -m fcn.train -cp <job dir>/.hydra -cn config hydra.run.dir=<job dir>
        hydra.output_subdir=null hydra.job.name=train_ddp_process_<rank>

No `-m`, so no sweep; the run directory exists already and `output_subdir=null` writes nothing
new. Each rank checks that its resolved config equals rank 0's (`check_same_config`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from fcn.core.errors import ConfigError

ENTRY_MODULE = "fcn.train"
_CONFIG_HASH_ENV = "FCN_DDP_CONFIG_SHA256"
# The variables Lightning's launcher writes into the parent's environment for its ranks.
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command line and cwd for rank `local_rank` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)  # absolute, exactly as the child will compute it
    if hc.output_subdir is not None:
        config_dir = job_dir / hc.output_subdir
    else:  # Hydra saved nothing: save the job's (unresolved) config ourselves, once.
        config_dir = job_dir / ".ddp"
        config_dir.mkdir(exist_ok=True)
        OmegaConf.save(_JOB_CONFIG["cfg"], config_dir / "config.yaml")
    if not (config_dir / "config.yaml").is_file():
        raise ConfigError(f"DDP: {config_dir / 'config.yaml'} is missing; cannot start the ranks")
    command = [
        sys.executable,
        "-m",
        ENTRY_MODULE,
        "--config-path",
        str(config_dir),
        "--config-name",
        "config",
        f"hydra.run.dir={_quote(job_dir)}",
        "hydra.output_subdir=null",
        f"hydra.job.name=train_ddp_process_{local_rank}",
    ]
    return command, get_original_cwd()


def _quote(path: Path) -> str:
    """A path as a quoted Hydra override value (survives '=', ',', spaces and brackets)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


_JOB_CONFIG: dict[str, DictConfig] = {}


def install_hydra_ddp_launcher(cfg: DictConfig) -> None:
    """Make Lightning's ddp launcher start ranks from this job's saved config (idempotent)."""
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as pl_launcher

    _JOB_CONFIG["cfg"] = cfg
    # Both modules hold their own reference (the pytorch one imports the fabric function).
    fabric_launcher._hydra_subprocess_cmd = rank_command
    pl_launcher._hydra_subprocess_cmd = rank_command
    # Ranks compare their resolved config with this one (inherited through the environment).
    if "LOCAL_RANK" not in os.environ:
        os.environ[_CONFIG_HASH_ENV] = resolved_config_digest(cfg)


def resolved_config_digest(cfg: DictConfig) -> str:
    """sha256 of the config as resolved YAML: two ranks with one digest run one config."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(cfg: DictConfig) -> None:
    """In a launched rank: fail loudly if its config resolved differently from rank 0's."""
    expected = os.environ.get(_CONFIG_HASH_ENV)
    if (
        expected
        and int(os.environ.get("LOCAL_RANK", "0")) > 0
        and resolved_config_digest(cfg) != expected
    ):
        raise ConfigError(
            "DDP: this rank's config resolves differently from rank 0's "
            "(an interpolation such as ${now:} changed); use plain values for such keys"
        )


def launched_by_rank_zero() -> bool:
    """This process is a rank Lightning started from rank 0's job (not rank 0, not srun's)."""
    return bool(os.environ.get(_CONFIG_HASH_ENV)) and int(os.environ.get("LOCAL_RANK", "0")) > 0


@contextmanager
def launched_ranks_cleanup(trainer_ref: list) -> Iterator[None]:
    """Leave the process as it was for the next job of a sweep: wait for the ranks this job
    launched, close the process group and drop the launcher's environment variables (a later
    job would otherwise think its ranks were created externally and wait for them forever)."""
    saved = {k: os.environ.get(k) for k in _LAUNCH_ENV}
    ok = False
    try:
        yield
        ok = True
    finally:
        trainer = trainer_ref[0] if trainer_ref else None
        launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
        for proc in getattr(launcher, "procs", []):
            try:  # after a failure a rank may wait in a collective for ever
                proc.wait(timeout=None if ok else 60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sync_batchnorm_supported(accelerator: str) -> bool:
    """torch's SyncBatchNorm only runs on GPU-like devices (it rejects CPU tensors)."""
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()
