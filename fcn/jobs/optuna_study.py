"""The study a search's workers share: where it is stored, how many trials it still needs, and
the trial the current process is training (for pruning).

Storage: a file path (the default, `<sweep dir>/optuna.journal`) is Optuna's journal file
storage, which works on a cluster's shared file system without a database server; a URL with
`://` (`sqlite:///...`, `postgresql://...`) is an RDB storage. A trial a killed worker left
RUNNING is retried as a new trial with the same parameters and the old trial's job number
(`job_num` user attribute), so it continues from that job directory's last.ckpt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fcn.core.errors import ConfigError

TRIAL_ENV = "FCN_OPTUNA_TRIAL"  # what DDP ranks and the pruning callback read
JOB_NUM = "job_num"  # user attribute: the job directory number a retried trial continues
RETRY_OF = "retry_of"


def open_storage(spec: str) -> Any:
    import optuna

    if "://" in spec:
        if spec.startswith("sqlite:///"):
            _check_writable(Path(spec.removeprefix("sqlite:///")), "hydra.sweeper.storage")
        return optuna.storages.RDBStorage(spec)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = Path(spec)
    _check_writable(path, "hydra.sweeper.storage")
    # The open(O_EXCL) lock: works on NFS, where fcntl locks may not.
    return optuna.storages.JournalStorage(
        JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    )


def _check_writable(path: Path, key: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.probe{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"{key}: cannot write {path} ({err.strerror}); give a writable path or an RDB URL"
        ) from None


def load_study(spec: str, name: str, direction: str, sampler: Any = None, pruner: Any = None):
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=open_storage(spec),
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def done_count(study: Any) -> int:
    """Trials that count towards n_trials: finished, pruned, and failures not retried."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    return sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )


def retry_orphans(study: Any) -> list[int]:
    """Trials left RUNNING by a search that is no longer running (killed workers): each fails
    and comes back as a waiting trial with its parameters and job number. Call only while no
    worker runs (the sweep command does, before it starts them)."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        retry(study, trial)
    return [t.number for t in running]


def retry(study: Any, trial: Any) -> None:
    """The trial fails and comes back waiting: same parameters, same job directory."""
    from optuna.trial import TrialState

    attrs = {JOB_NUM: trial.user_attrs.get(JOB_NUM, trial.number), RETRY_OF: trial.number}
    study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)
    study.tell(trial.number, state=TrialState.FAIL)


PRUNERS = ("median", "hyperband", "none")


def make_pruner(name: str) -> Any:
    """`hydra.sweeper.pruner`: Optuna's MedianPruner (a trial below the median of earlier
    trials at the same epoch stops; the first 2 trials and epoch 0 always run on),
    HyperbandPruner, or none."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"hydra.sweeper.pruner={name}: not one of {', '.join(PRUNERS)}")


def set_current_trial(storage: str, study_name: str, pruner: str, trial_number: int) -> None:
    os.environ[TRIAL_ENV] = json.dumps(
        {"storage": storage, "study": study_name, "pruner": pruner, "number": trial_number}
    )


def clear_current_trial() -> None:
    os.environ.pop(TRIAL_ENV, None)


def current_trial() -> Any | None:
    """The Optuna trial this process trains, or None outside a search worker."""
    raw = os.environ.get(TRIAL_ENV)
    if not raw:
        return None
    import optuna

    info = json.loads(raw)
    study = optuna.load_study(
        study_name=info["study"],
        storage=open_storage(info["storage"]),
        pruner=make_pruner(info["pruner"]),
    )
    # Optuna makes Trial objects only in ask(); a worker's training process (and its DDP
    # ranks) rebuilds the asked one from its number.
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, info["number"]
    )
    return optuna.trial.Trial(study, trial_id)
