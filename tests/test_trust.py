"""What users must be able to trust: loading a checkpoint runs no code, fcn-eval's numbers under
DDP equal the 1-process ones, a diverging run stops without saving over its checkpoints, and a
run killed at any moment leaves only complete checkpoints to resume from.

Entry points run as `python -m <module> <argv>` would (runpy, as __main__) in processes forked
from a forkserver that imported fcn once (a fresh `python -m` start costs ~5 s each); the
unsafe-checkpoint and DDP checks also run one real `python -m` command each.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import random
import re
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from test_evaluate import NUM_CLASSES, eval_cfg, trained_checkpoint, voc

from fcn.core.errors import DataError, DivergenceError
from fcn.data import VOCDataModule
from fcn.data.eval_sharding import ExactEvalSampler
from fcn.evaluate import evaluate
from fcn.training.module import SegmentationModule

FORK = multiprocessing.get_context("forkserver")
# Imported once in the server; a fork of it starts in ~0.3 s. (Forking pytest itself would hang:
# OpenMP threads used before fork() do not exist in the child.)
FORK.set_forkserver_preload(["fcn.train", "fcn.evaluate", "fcn.predict", "fcn.export"])
UNSAFE = "may be unsafe or not an fcn checkpoint"


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


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_voc) -> Path:
    return trained_checkpoint(tmp_path_factory, tiny_voc)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return {"FCN_CACHE": str(tmp_path_factory.mktemp("fcn_cache"))}


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


# ---- loading never runs code ------------------------------------------------------------------
class _Payload:
    """Pickles as a call to os.system: what a hostile `.ckpt` can hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_checkpoint_with_code_is_refused_by_every_entry_point(tmp_path, ckpt, tiny_voc, env):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save({**state, "x": _Payload(marker)}, evil)  # real weights: otherwise acceptable
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: unpickling runs it
    assert marker.exists()
    marker.unlink()
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, run_dir / "checkpoints" / "last.ckpt")
    image = next((tiny_voc / "JPEGImages").glob("val_*.jpg"))

    cases = {
        "evaluate": ("fcn.evaluate", [f"ckpt_path={evil}", *voc(tiny_voc)], evil),
        "export": ("fcn.export", [f"ckpt_path={evil}", "format=torchscript"], evil),
        "train ckpt_path": ("fcn.train", [*tiny_train(tiny_voc), f"ckpt_path={evil}"], evil),
        "train resume": (
            "fcn.train",
            [*tiny_train(tiny_voc), f"resume={run_dir}"],
            run_dir / "checkpoints" / "last.ckpt",
        ),
        "train init_from": ("fcn.train", [*tiny_train(tiny_voc), f"init_from={evil}"], evil),
    }
    runs = {
        name: Main(
            module, [*argv, f"hydra.run.dir={tmp_path / name.replace(' ', '_')}"], tmp_path, **env
        )
        for name, (module, argv, _) in cases.items()
    }
    # fcn-predict, as in the report that found it, as a real command line.
    predict = subprocess.run(
        [sys.executable, "-m", "fcn.predict", f"ckpt_path={evil}", f"input={image}"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = {name: (run.wait().code, run.err) for name, run in runs.items()}
    results["predict"] = (predict.returncode, predict.stderr)
    cases["predict"] = ("fcn.predict", [], evil)
    for name, (code, err) in results.items():
        line = one_error_line(err)
        assert code == 2, (name, err[-2000:])
        assert str(cases[name][2]) in line and UNSAFE in line and "posix.system" in line, name
    assert not marker.exists()


def test_own_checkpoints_need_no_allowed_types(ckpt):
    # Everything fcn writes (hyper-parameters, loops, callbacks, schedulers) is plain data.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []


# ---- a diverging run ---------------------------------------------------------------------------
@pytest.mark.slow
def test_diverging_run_stops_with_one_line_and_keeps_its_checkpoints(tmp_path, tiny_voc, env):
    # From epoch 1 on the lr is 0.05 * 1e12: the weights blow up within two steps.
    diverging = [*tiny_train(tiny_voc), "scheduler=step", "scheduler.milestones=[1]"]
    diverging.append("scheduler.gamma=1e12")
    run = tmp_path / "run"
    first = Main("fcn.train", [*diverging, f"hydra.run.dir={run}"], tmp_path, **env).wait()
    assert first.code == 0, first.err[-3000:]
    checkpoints = run / "checkpoints"
    before = {p.name: sha256(p) for p in checkpoints.iterdir()}
    assert "last.ckpt" in before and len(before) == 2  # last and best

    more = [*diverging, "trainer.max_epochs=4", f"resume={run}", f"hydra.run.dir={tmp_path / 'r2'}"]
    second = Main("fcn.train", more, tmp_path, **env).wait()
    line = one_error_line(second.err)
    assert second.code == 2
    match = re.fullmatch(
        r"error: loss is nan at step (\d+) \(lr=5e\+10\): lower optimizer\.lr .*", line
    )
    assert match and 2 < int(match.group(1)) <= 4, line  # stopped in its first epoch
    assert {p.name: sha256(p) for p in checkpoints.iterdir()} == before
    assert "best val/mIoU" not in second.out


class _PoisonWeights(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        with torch.no_grad():
            next(pl_module.parameters()).fill_(float("inf"))


def test_non_finite_weights_are_never_saved(tmp_path, tiny_datamodule: VOCDataModule):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = SegmentationModule("resnet18", "fcn32s", NUM_CLASSES)
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[_PoisonWeights(), ModelCheckpoint(tmp_path, "last", every_n_train_steps=1)],
    )
    with pytest.raises(DivergenceError, match="weights are not finite at step 1"):
        trainer.fit(module, datamodule=tiny_datamodule)
    assert list(tmp_path.iterdir()) == []


# ---- fcn-eval under DDP -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splits(tmp_path_factory, tiny_voc) -> Path:
    """The tiny tree with splits n1, n4 and n5 (1, 4 and 5 images of different sizes)."""
    root = tmp_path_factory.mktemp("splits") / "VOC"
    shutil.copytree(tiny_voc, root)
    lists = root / "ImageSets" / "Segmentation"
    ids = (lists / "val.txt").read_text().split() + (lists / "train.txt").read_text().split()
    for n in (1, 4, 5):
        (lists / f"n{n}.txt").write_text("\n".join(ids[:n]) + "\n")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranks(argv: list[str], world: int, run_dir: Path, cwd: Path, env: dict) -> list[Main]:
    """`world` processes of one DDP job started outside Lightning (as torchrun or srun would):
    Lightning reads LOCAL_RANK, WORLD_SIZE, MASTER_* and launches nothing itself."""
    dist = {"NODE_RANK": "0", "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1"}
    dist["MASTER_PORT"] = str(free_port())
    ddp = ["trainer=ddp", f"trainer.devices={world}", f"hydra.run.dir={run_dir}"]
    return [
        Main(
            "fcn.evaluate",
            [*argv, *ddp, *(["hydra.output_subdir=null", f"hydra.job.name=rank{r}"] if r else [])],
            cwd,
            LOCAL_RANK=str(r),
            **dist,
            **env,
        )
        for r in range(world)
    ]


@pytest.mark.slow
def test_ddp_evaluate_equals_one_process_exactly(tmp_path, ckpt, splits, env):
    single = {}
    for n in (1, 4, 5):
        evaluate(eval_cfg(ckpt, splits, tmp_path / f"single_n{n}", f"split=n{n}"))
        single[n] = json.loads((tmp_path / f"single_n{n}" / "metrics.json").read_text())
        assert single[n]["num_images"] == n

    argv = lambda n: [f"ckpt_path={ckpt}", *voc(splits), f"split=n{n}"]  # noqa: E731
    for world in (2, 3):
        for n in (1, 4, 5):  # n=1: ranks without an image; 4 and 5: uneven shares
            run_dir = tmp_path / f"ddp{world}_n{n}"
            for r, rank in enumerate(ranks(argv(n), world, run_dir, tmp_path, env)):
                assert rank.wait().code == 0, rank.err[-3000:]
                assert f"GLOBAL_RANK: {r}, MEMBER: {r + 1}/{world}" in rank.err  # really DDP
            ddp = json.loads((run_dir / "metrics.json").read_text())
            assert ddp == single[n], (world, n)  # every key, num_images included

    # The real command line, Lightning launching rank 1 (5 images gave images=6 before).
    (tmp_path / "cli").mkdir()
    cli = subprocess.run(
        [sys.executable, "-m", "fcn.evaluate", *argv(5), "trainer=ddp", "trainer.devices=2"],
        cwd=tmp_path / "cli",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "images=5 " in cli.stdout
    (metrics,) = (tmp_path / "cli" / "outputs").glob("*/*/metrics.json")
    assert json.loads(metrics.read_text()) == single[5]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [1, 4, 5])
def test_exact_eval_sampler_gives_each_image_to_one_rank(n, world):
    shares = [list(ExactEvalSampler(range(n), world, rank)) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == list(range(n))
    assert [len(ExactEvalSampler(range(n), world, r)) for r in range(world)] == list(
        map(len, shares)
    )


def test_validation_split_smaller_than_the_world_is_one_clear_error(monkeypatch, tiny_datamodule):
    # Training's validation syncs inside Lightning's loop: every rank needs an image.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args: 5)
    tiny_datamodule.setup("validate")
    with pytest.raises(DataError, match="the val split has 4 images but the run has 5 processes"):
        tiny_datamodule.val_dataloader()


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
            ".tmp-" in p.name and p.stat().st_mtime_ns >= started
            for p in checkpoints.iterdir()
        )
        resumed_at = load_all(checkpoints)
        assert resumed_at >= step  # progress is never lost
        step = resumed_at
    assert during_write >= 3, during_write
    return step
