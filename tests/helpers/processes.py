"""Entry points run as `python -m <module> <argv>` would (runpy, as __main__) in processes forked
from a forkserver that imported fcn once (a fresh `python -m` start costs seconds each).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import runpy
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

from helpers.trained import voc

FORK = multiprocessing.get_context("forkserver")
# Imported once in the server; a fork of it starts in ~0.3 s. (Forking pytest itself would hang:
# OpenMP threads used before fork() do not exist in the child.)
FORK.set_forkserver_preload(["fcn.train", "fcn.evaluate", "fcn.predict", "fcn.export"])


# ---- running entry points -----------------------------------------------------------------------
def _child_main(module: str, argv: list[str], cwd: str, env: dict, log: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # re-read TMPDIR from this environment
    for name, fd in (("out", 1), ("err", 2)):
        file = os.open(f"{log}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, fd)
    sys.argv = [module, *argv]
    # As `python -m module`: run as __main__ (Hydra finds conf/ from the file, not the package);
    # the server imported it already, which runpy would warn about.
    warnings.filterwarnings("ignore", "'fcn.* found in sys.modules", RuntimeWarning)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


class Main:
    """`python -m <module> <argv>` as a forked process: start, wait or kill, read its output."""

    def __init__(self, module: str, argv: list[str], cwd: Path, **env: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.log = cwd / f"{module}.{time.monotonic_ns()}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        args = (module, [str(a) for a in argv], str(cwd), env, str(self.log))
        self.process = FORK.Process(target=_child_main, args=args, daemon=True)
        self.process.start()

    def wait(self, timeout: float = 300) -> Main:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            raise AssertionError(f"timed out: {self.err[-3000:]}")
        return self

    @property
    def code(self) -> int | None:
        return self.process.exitcode

    @property
    def out(self) -> str:
        return Path(f"{self.log}.out").read_text()

    @property
    def err(self) -> str:
        return Path(f"{self.log}.err").read_text()


def one_error_line(err: str) -> str:
    """The single `error:` line of a refused command (no traceback)."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_train(root: Path) -> list[str]:
    """A seconds-long fcn.train run on the tiny tree (8 train images: 2 steps an epoch)."""
    return [
        *voc(root),
        "data.crop_size=[32,32]",
        "data.batch_size=4",
        "trainer.limit_val_batches=1",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "logger=none",
        "test_after_fit=false",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
