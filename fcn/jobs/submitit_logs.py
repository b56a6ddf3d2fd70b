"""submitit's own log lines, kept where they help: its sacct warning once per sweep command, not
three times every poll; in a job, its INFO lines on the job's stderr, so the job's `_log.out`
ends with the run's summary line (README, Cluster runs).

submitit logs to stdout and (warnings) stderr itself, and its records also reach the root
logger, which Hydra prints: one warning came out three times. Nothing here imports submitit
(an optional package); the filters sit on the `submitit` logger, which submitit's own logging
set-up keeps.
"""

from __future__ import annotations

import logging
import os
import sys

SACCT_WARNING = "Bypassing sacct error"


class SacctWarningOnce(logging.Filter):
    """Prints submitit's first "Bypassing sacct error" warning once, on stderr, and drops it
    and every later one from submitit's handlers and the root logger's.

    Without accounting (`sacct` missing or off, as on scripts/slurm_local.sh's cluster) submitit
    cannot read job states and says so at each poll; it still finds results by their files.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        if SACCT_WARNING not in record.getMessage():
            return True
        if not self.shown:
            self.shown = True
            print(
                f"submitit WARNING - {record.getMessage()} (shown once: without SLURM accounting "
                "submitit cannot read job states; results are still collected)",
                file=sys.stderr,
                flush=True,
            )
        return False


class InfoToStderr(logging.Filter):
    """In a submitit job: submitit's records below WARNING leave its stdout handler (and the
    root logger's) and are written to stderr instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        print(f"submitit {record.levelname} - {record.getMessage()}", file=sys.stderr, flush=True)
        return False


def quiet_submitit_logs() -> None:
    """Install the filters above on the `submitit` logger (once per process)."""
    logger = logging.getLogger("submitit")
    if not any(isinstance(f, SacctWarningOnce) for f in logger.filters):
        logger.addFilter(SacctWarningOnce())
    in_job = "SUBMITIT_EXECUTOR" in os.environ
    if in_job and not any(isinstance(f, InfoToStderr) for f in logger.filters):
        logger.addFilter(InfoToStderr())
