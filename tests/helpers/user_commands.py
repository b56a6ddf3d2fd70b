"""Running fcn's commands as a user does: in a subprocess, from a directory of the test's own,
with this repository first on PYTHONPATH (so an editable install elsewhere does not win)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The installed console scripts and `python` sit next to the interpreter running the tests.
BIN_DIR = Path(sys.executable).parent
SUMMARY = re.compile(r"^best val/mIoU=(\S+) checkpoint=(\S+) logs=(\S+)$", re.M)
# A Python warning as printed (`file.py:12: message`, `XWarning: ...`), a logged WARNING, or
# one of Lightning's tips.
WARNING_LINE = re.compile(r"^\S*\.py:\d+: |\w*Warning\b|WARNING|Tip:", re.M)


def cli_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment a command runs in: this repo first on PYTHONPATH, the venv's bin first on
    PATH, the synthetic data cached under `cache`, one torch thread (2 shared cores)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FCN_DATA", "VOC_ROOT")}
    python_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(
        PYTHONPATH=os.pathsep.join(python_path),
        PATH=os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")]),
        FCN_CACHE=str(cache),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(argv)} -> {result.returncode}\n{result.stdout[-2000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    return result


def warning_lines(result: subprocess.CompletedProcess) -> list[str]:
    """Lines of a run's output that look like a warning or one of Lightning's tips."""
    text = result.stdout + "\n" + result.stderr
    return [line for line in text.splitlines() if WARNING_LINE.search(line)]


def tiny_train(num_train: int = 4, batch_size: int = 2) -> list[str]:
    """fcn.train overrides for a run of seconds: synthetic 64 px data, 2 steps, 1 epoch."""
    return [
        f"data.synthetic.num_train={num_train}",
        "data.synthetic.num_val=2",
        "data.synthetic.size=[64,64]",
        "data.crop_size=[64,64]",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
    ]
