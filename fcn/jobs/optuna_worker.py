"""One search worker: ask the shared study for a trial, train it in its own job directory,
tell the study, ask again, until the study has `n_trials` finished, pruned or failed trials.
Workers never wait for each other; they share only the study (and a lock file around ask).

A worker runs as one launcher job (a local process or a SLURM job) and each trial as a Hydra
job inside it (`run_job` on the trial's config, as a launcher would), in `<sweep>/<job num>_...`.
Its current trial is noted in `<worker dir>/trial.json`: a requeued worker finishes that
trial first (same parameters, same directory, so fcn.train resumes from its last.ckpt).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from fcn.core.atomic import write_text_atomic
from fcn.core.file_lock import exclusive
from fcn.jobs.job_record import read_result
from fcn.jobs.optuna_study import (
    JOB_NUM,
    clear_current_trial,
    done_count,
    load_study,
    make_pruner,
    set_current_trial,
)
from fcn.jobs.trial_heartbeat import NOTE, Heartbeat, retry_stale

log = logging.getLogger(__name__)
WORKER = "worker"  # user attribute: which worker ran the trial (the report's timeline)


class TrialWorker:
    def __init__(
        self,
        *,
        hydra_context: Any,
        base_config: DictConfig,
        task_function: Any,
        space: dict[str, Any],
        fixed: list[str],
        settings: dict[str, Any],
    ) -> None:
        self.hydra_context = hydra_context
        self.base_config = base_config
        self.task_function = task_function
        self.space = space
        self.fixed = fixed
        # storage, study_name, direction, pruner, n_trials, sampler (config), sweep_dir
        self.s = settings

    def __call__(self, cfg: DictConfig) -> int:
        from hydra.core.hydra_config import HydraConfig

        worker = int(HydraConfig.get().job.num)
        worker_dir = Path(HydraConfig.get().runtime.output_dir)
        study = self._study(worker)
        ran = 0
        with exclusive(self._workers_dir / "ask.lock"):  # not retried by another meanwhile
            own = _interrupted_trial(worker_dir, study)
        if own is not None:
            log.info(f"worker {worker}: finishing its interrupted trial {own.number}")
            self._run(study, own.number, own.params, own.user_attrs, worker, worker_dir)
            ran += 1
        while (trial := self._ask(study, worker)) is not None:
            self._run(study, trial.number, trial.params, trial.user_attrs, worker, worker_dir)
            ran += 1
        log.info(f"worker {worker}: {ran} trials; the study has {self.s['n_trials']}, stopping")
        return ran

    def _study(self, worker: int) -> Any:
        from hydra.utils import instantiate

        study = load_study(
            self.s["storage"],
            self.s["study_name"],
            self.s["direction"],
            pruner=make_pruner(self.s["pruner"]),
        )
        sampler_cfg = self.s["sampler"]
        if sampler_cfg is not None:
            seed = sampler_cfg.get("seed")
            # Each worker, and each start of one (requeued, re-run), its own seed: the same
            # seed would draw the same trials again.
            have = len(study.get_trials(deepcopy=False))
            extra = {} if seed is None else {"seed": int(seed) + 1000 * worker + have}
            study.sampler = instantiate(sampler_cfg, **extra)
        return study

    def _ask(self, study: Any, worker: int) -> Any | None:
        from optuna.trial import TrialState

        with exclusive(self._workers_dir / "ask.lock"):
            stale_after = float(self.s["stale_after_s"])
            for number in retry_stale(study, self._workers_dir, WORKER, stale_after):
                log.info(f"worker {worker}: trial {number} lost its worker; retrying it")
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not waiting and done_count(study) + len(running) >= self.s["n_trials"]:
                return None
            trial = study.ask(fixed_distributions=self.space)  # a waiting (retried) one first
            trial.set_user_attr(WORKER, worker)
            return trial

    @property
    def _workers_dir(self) -> Path:
        return Path(self.s["sweep_dir"]) / ".workers"

    def _run(
        self,
        study: Any,
        number: int,
        params: dict,
        attrs: dict,
        worker: int,
        worker_dir: Path,
    ) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobStatus, run_job
        from optuna.trial import TrialState

        job_num = int(attrs.get(JOB_NUM, number))
        overrides = [f"{k}={params[k]}" for k in self.space if k in params] + self.fixed
        write_text_atomic(worker_dir / NOTE, json.dumps({"trial": number}) + "\n")
        loader = self.hydra_context.config_loader
        config = loader.load_sweep_config(self.base_config, overrides)
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{job_num}"
            config.hydra.job.num = job_num
        worker_config = HydraConfig.instance().cfg  # the worker job's, back after the trial
        HydraConfig.instance().set_config(config)
        set_current_trial(self.s["storage"], self.s["study_name"], self.s["pruner"], number)
        beat = Heartbeat(worker_dir / NOTE, min(10.0, float(self.s["stale_after_s"]) / 4))
        try:
            with beat:
                ret = run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
        except SystemExit as stop:
            if stop.code != 2:  # a signal: the trial stays RUNNING for its requeued worker
                raise
            study.tell(number, state=TrialState.FAIL)
            (worker_dir / NOTE).unlink(missing_ok=True)
            raise
        finally:
            clear_current_trial()
            HydraConfig.instance().cfg = worker_config
        record = read_result(config.hydra.runtime.output_dir) or {}
        if ret.status == JobStatus.COMPLETED and record.get("status") == "pruned":
            study.tell(number, state=TrialState.PRUNED)
        elif ret.status == JobStatus.COMPLETED:
            study.tell(number, float(ret.return_value))
        else:
            log.warning(f"trial {number} failed: {ret._return_value!r}")
            study.tell(number, state=TrialState.FAIL)
        (worker_dir / NOTE).unlink(missing_ok=True)


def _interrupted_trial(worker_dir: Path, study: Any) -> Any | None:
    """The trial this worker was training when it was stopped, if the study still has it
    RUNNING (a requeued worker picks it up again)."""
    from optuna.trial import TrialState

    note = worker_dir / NOTE
    if not note.is_file():
        return None
    number = json.loads(note.read_text())["trial"]
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials or trials[0].state != TrialState.RUNNING:
        return None
    note.touch()  # a pulse: the trial has its worker back
    return trials[0]
