"""A worker's pulse: while it trains a trial it touches `<worker dir>/trial.json` every few
seconds; a RUNNING trial whose worker's note is older than `hydra.sweeper.stale_after_s` (or
names another trial) belongs to a worker that was killed or waits in a queue, and the next
worker that asks for a trial retries it (same parameters, same job directory, from its
last.ckpt). Optuna's own heartbeat runs only inside `study.optimize`, not with ask/tell.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from fcn.jobs.optuna_study import retry

NOTE = "trial.json"


class Heartbeat:
    """Touch `note` every `interval_s` seconds while in the `with` block."""

    def __init__(self, note: Path, interval_s: float) -> None:
        self.note, self.interval_s = note, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.note.touch()
            except OSError:  # the note is gone: the trial ended between two beats
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def retry_stale(study: Any, workers_dir: Path, worker_attr: str, stale_after_s: float) -> list[int]:
    """Retry the RUNNING trials no live worker holds; call under the ask lock."""
    from optuna.trial import TrialState

    now = time.time()
    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - trial.datetime_start.timestamp() < stale_after_s:
            continue  # just asked: its worker may not have written its note yet
        note = workers_dir / str(trial.user_attrs.get(worker_attr)) / NOTE
        try:
            holds = json.loads(note.read_text()).get("trial") == trial.number
            fresh = now - note.stat().st_mtime < stale_after_s
        except (OSError, ValueError):
            holds = fresh = False
        if holds and fresh:
            continue
        retry(study, trial)
        retried.append(trial.number)
    return retried
