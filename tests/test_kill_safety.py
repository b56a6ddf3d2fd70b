"""A run killed at any moment (SIGKILL, also in the middle of a checkpoint write) leaves only
complete checkpoints, and resuming from them loses no progress."""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch
from helpers.processes import Main, tiny_train


# ---- SIGKILL at any moment -----------------------------------------------------------------------
def test_first_save_removes_files_left_by_killed_writers(tmp_path):
    from fcn.training.checkpoint_io import AtomicCheckpointIO

    gone = 2**22 + 1  # above Linux's largest pid: no such writer is alive
    left = [
        tmp_path / f".best-epoch003-val_mIoU0.1234.ckpt.tmp-{gone}",
        tmp_path / f".last.ckpt.tmp-{gone}",
    ]
    for path in left:
        path.write_bytes(b"cut short")
    (tmp_path / "keep.ckpt").write_bytes(b"not ours to judge")
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"step": 1}


def dir_state(directory: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and times of the files (a file renamed away meanwhile counts as -1)."""
    state = []
    for path in directory.iterdir():
        try:
            stat = path.stat()
            state.append((path.name, stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            state.append((path.name, -1, -1))
    return sorted(state)


def load_all(checkpoints: Path) -> int:
    """Every checkpoint file left loads (weights_only); returns last.ckpt's global step."""
    steps = {}
    for path in checkpoints.glob("*.ckpt"):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert "state_dict" in ckpt and "optimizer_states" in ckpt, path
        steps[path.name] = ckpt["global_step"]
    return steps["last.ckpt"]


@pytest.mark.slow
def test_killed_run_leaves_only_complete_checkpoints_and_resumes(tmp_path, tiny_voc, env):
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    # Small steps (32 px crops, 2 images), a last.ckpt after each: mostly writing checkpoints.
    every_step = [*tiny_train(tiny_voc), "+callbacks.last_checkpoint.every_n_train_steps=1"]
    every_step += ["data.batch_size=2", "trainer.max_epochs=1000"]
    env = dict(env)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        # Temporary files elsewhere than the run: a save through the system temp directory
        # would end in a copy into last.ckpt, which a kill can cut short.
        env["TMPDIR"] = tempfile.mkdtemp(dir=shm)
    try:
        killed_at = kill_repeatedly(run, every_step, tmp_path, env)
        epoch = torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"]
        argv = [*every_step, f"trainer.max_epochs={epoch + 2}", f"resume={run}"]
        done = Main("fcn.train", [*argv, f"hydra.run.dir={tmp_path / 'done'}"], tmp_path, **env)
        assert done.wait().code == 0, done.err[-3000:]
    finally:
        if "TMPDIR" in env:
            shutil.rmtree(env["TMPDIR"])
    assert "best val/mIoU=" in done.out
    assert load_all(checkpoints) > killed_at
    assert not any(".tmp-" in p.name for p in checkpoints.iterdir())


def kill_repeatedly(run: Path, argv: list[str], cwd: Path, env: dict, kills: int = 20) -> int:
    """Start `fcn.train` on `run`, SIGKILL it, resume it, ... `kills` times; after each kill every
    checkpoint left loads and progress was not lost. Returns the step of the last last.ckpt."""
    checkpoints = run / "checkpoints"
    rng = random.Random(13)
    step, during_write = 0, 0
    for attempt in range(kills):
        started = time.time_ns()
        if attempt == 0:
            process = Main("fcn.train", [*argv, f"hydra.run.dir={run}"], cwd, **env)
            while not (checkpoints / "last.ckpt").exists():
                assert process.process.is_alive(), process.err[-3000:]
                time.sleep(0.01)
        else:
            resume = [*argv, f"resume={run}", f"hydra.run.dir={cwd / f'r{attempt}'}"]
            process = Main("fcn.train", resume, cwd, **env)
        if attempt % 3 == 0:  # anywhere: starting up, restoring, training, writing
            time.sleep(rng.uniform(0.0, 2.0))
        else:  # the moment this process starts (1) or finishes (2) a checkpoint write
            before = dir_state(checkpoints)
            while dir_state(checkpoints) == before and process.process.is_alive():
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.01 if attempt % 3 == 1 else 0.3))
        assert process.process.is_alive(), process.err[-3000:]
        os.kill(process.process.pid, signal.SIGKILL)
        process.process.join()
        during_write += any(  # a write of this process cut short
            ".tmp-" in p.name and p.stat().st_mtime_ns >= started for p in checkpoints.iterdir()
        )
        resumed_at = load_all(checkpoints)
        assert resumed_at >= step  # progress is never lost
        step = resumed_at
    assert during_write >= 3, during_write
    return step
