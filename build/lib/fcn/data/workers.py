"""DataLoader workers: job control stays with the main process.

Workers are forked with the parent's signal handlers: submitit's among them, so a SLURM
signal reaching the whole job made each worker requeue the job and die (`DataLoader worker
exited unexpectedly`). The main process owns the stop (fcn/jobs/signals.py).
"""

from __future__ import annotations

import os
import signal

# SIGINT too: Ctrl+C reaches the whole process group, and the main process owns the stop.
WORKER_IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def worker_init(worker_id: int) -> None:
    """DataLoader worker_init_fn: leave job control to the main process; then Lightning's
    per-worker seeding, which Lightning only adds to loaders without a worker_init_fn."""
    for signum in WORKER_IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)  # SLURM sends it with SIGTERM; submitit logs it
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
