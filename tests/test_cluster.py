"""Cluster runs: pre-emption/time-limit signals, requeued jobs, resumable sweeps, the report.

Tests marked `slurm` submit to a real SLURM (bring one up on this machine with
`bash scripts/slurm_local.sh`, as root); they skip when `sbatch` is absent or the cluster does not
answer. Nothing here needs SLURM's accounting database (sacct).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from test_scaleout import CONF, SUMMARY, _compose, cli_env, ok, tiny
from torch.utils.data import DataLoader, Dataset

from fcn.core.errors import ConfigError
from fcn.data.workers import worker_init
from fcn.jobs.job_record import RESULT_FILE, continue_job
from fcn.jobs.signals import JobSignals
from fcn.report import write_report
from fcn.train import train

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",  # CPU-only cluster: no GRES
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=null",
    # long enough that submitit counts an early USR2 as pre-emption, not a time-out
    "hydra.launcher.timeout_min=60",
]


class PauseAtSteps(L.Callback):
    """Test helper (loaded by the CLI from tests/): at each global step in `steps` (of sweep job
    number `job`, if given), write `<marker>.<step>` ("<batch_idx> <SLURM job id>") once and wait
    for the signal the test sends, so it lands at a known point mid-epoch."""

    def __init__(self, steps: list[int], marker: str, job: int | None = None) -> None:
        self.steps, self.marker, self.job = list(steps), marker, job

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from hydra.core.hydra_config import HydraConfig

        if self.job is not None and HydraConfig.get().job.num != self.job:
            return
        marker = Path(f"{self.marker}.{trainer.global_step}")
        if trainer.global_step in self.steps and not marker.exists():
            marker.write_text(f"{batch_idx} {os.environ.get('SLURM_JOB_ID', '')}")
            deadline = time.monotonic() + 180
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


def pause(marker: Path, steps: list[int], job: int | None = None) -> list[str]:
    args = [
        "+callbacks.pause._target_=test_cluster.PauseAtSteps",
        f"+callbacks.pause.steps=[{','.join(map(str, steps))}]",
        f"+callbacks.pause.marker={marker}",
    ]
    return args + ([f"+callbacks.pause.job={job}"] if job is not None else [])


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not path.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{path.name} never appeared:\n{out[-2000:]}\n{err[-3000:]}")
    time.sleep(0.2)  # the marker's text is written right after it is created
    return path.read_text()


def one_thread_env() -> dict[str, str]:
    # Tiny models: one thread is as fast, and far faster on a busy machine (no OpenMP
    # spinning). SLURM jobs inherit it from the submitting process.
    return {**cli_env(), "OMP_NUM_THREADS": "1"}


@contextmanager
def one_thread() -> Iterator[None]:
    """In-process reference runs with the thread count of the jobs they are compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def popen_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "fcn.train", *args],
        cwd=cwd,
        env=one_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = popen_cli(args, cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def results(sweep: Path) -> dict[str, dict]:
    """Job records by their sweep overrides (job dirs are found, not named)."""
    found = {}
    for path in sweep.rglob(RESULT_FILE):
        record = json.loads(path.read_text())
        found[" ".join(sorted(record["overrides"]))] = {**record, "dir": path.parent}
    return found


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic_cache")


# ---- signals ------------------------------------------------------------------------------------
class _Squares(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)]
        default = signal.getsignal(signal.SIGCONT) == signal.SIG_DFL
        return torch.tensor([h == signal.SIG_IGN for h in handlers] + [default])


def test_dataloader_workers_ignore_job_signals():
    # The parent's handlers (submitit's, ours) are inherited at fork; workers must not run them.
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)
    previous_cont = signal.signal(signal.SIGCONT, lambda *_: None)
    try:
        loader = DataLoader(_Squares(), batch_size=2, num_workers=1, worker_init_fn=worker_init)
        (ignored,) = list(loader)
    finally:
        signal.signal(signal.SIGUSR2, previous)
        signal.signal(signal.SIGCONT, previous_cont)
    assert ignored.all()


def test_job_signals_use_signal_connector_received_sigterm():
    """USR2 during fit only sets the flag Lightning's loops check (its private signal
    connector's `received_sigterm`); after the checkpoint, rank 0 hands USR2 to the job's own
    handler (submitit's requeue). SIGTERM alone asks for no requeue (SLURM requeues itself)."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        signals = JobSignals(active=True)
        with signals:
            signals.on_fit_start(trainer, None)
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
            assert trainer.received_sigterm and trainer._signal_connector.received_sigterm
            assert calls == []  # the job's handler does not run mid-batch
        assert signal.getsignal(signal.SIGUSR2) is not signals._handle  # given back
        assert signals.requeue(is_global_zero=False) == "rank 0 requeues the job" and not calls
        signals.requeue(is_global_zero=True)
        assert calls == [signal.SIGUSR2]

        term = JobSignals(active=True)
        with term:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert term.received == signal.SIGTERM and term.requeue(True) == ""
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not JobSignals(active=False).stop_pending(trainer)  # no collective outside clusters


def test_cluster_defaults_compose():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        slurm = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True)
        search = compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    assert slurm.hydra.launcher.max_num_timeout == 20  # long runs cross time limits
    assert slurm.hydra.launcher.signal_delay_s == 120
    assert search.hydra.sweeper._target_.endswith("ResumableOptunaSweeper")
    assert search.hydra.sweeper.storage == f"sqlite:///{search.hydra.sweep.dir}/optuna.db"


def test_resumable_optuna_uses_optuna_sweeper_impl_attributes():
    """The resumable sweeper adjusts hydra-optuna-sweeper's private OptunaSweeperImpl
    (n_trials, job_idx, storage, study_name, params, sampler) and parses overrides with its
    _impl.create_params_from_overrides, as its sweep() does."""
    from hydra_plugins.fcn_optuna_sweeper import ResumableOptunaSweeper
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    sweeper = ResumableOptunaSweeper(
        sampler=None,
        direction="maximize",
        storage="sqlite:///x.db",
        study_name="s",
        n_trials=4,
        n_jobs=1,
        max_failure_rate=0.0,
        search_space=None,
        custom_search_space=None,
        params={"optimizer.lr": "interval(0.1, 1)"},
    )
    impl = sweeper.sweeper
    settings = (impl.n_trials, impl.job_idx, impl.storage, impl.study_name)
    assert settings == (4, 0, "sqlite:///x.db", "s")
    assert dict(impl.params) == {"optimizer.lr": "interval(0.1, 1)"} and hasattr(impl, "sampler")
    space, fixed = create_params_from_overrides(["optimizer.lr=interval(0.1, 1)", "seed=3"])
    assert list(space) == ["optimizer.lr"] and fixed == {"seed": "3"}


# ---- job records --------------------------------------------------------------------------------
def test_continue_job_skips_finished_resumes_last_and_refuses_another_job(tmp_path, monkeypatch):
    monkeypatch.setattr("fcn.jobs.job_record.job_overrides", lambda: ["head=fcn8s", "seed=1"])
    job = tmp_path / "job"
    assert continue_job(job, None) == (None, None)  # fresh
    (job / "checkpoints").mkdir(parents=True)
    (job / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert continue_job(job, None) == (str(job / "checkpoints" / "last.ckpt"), None)
    assert continue_job(job, "other.ckpt") == ("other.ckpt", None)  # explicit wins

    record = {"status": "finished", "overrides": ["seed=1", "head=fcn8s"], "value": 0.5}
    (job / RESULT_FILE).write_text(json.dumps(record))
    assert continue_job(job, None) == (None, record)
    record["overrides"] = ["head=fcn32s", "seed=1"]
    (job / RESULT_FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="holds the job head=fcn32s seed=1, not head=fcn8s"):
        continue_job(job, None)
    (job / RESULT_FILE).write_text("{")
    with pytest.raises(ConfigError, match="unreadable job record"):
        continue_job(job, None)


def test_finished_run_is_not_run_again_in_its_directory(tmp_path, data_dir, capsys):
    # A stray requeue of a job that finished: same directory, result.json says finished.
    cfg = _compose([*tiny(data_dir), "trainer.fast_dev_run=true", "test_after_fit=false"], tmp_path)
    with one_thread():
        first = train(cfg)
    record = json.loads((tmp_path / RESULT_FILE).read_text())
    assert record["status"] == "finished" and record["metrics"]["best_val_mIoU"] is None
    capsys.readouterr()
    again = train(_compose([*tiny(data_dir), "trainer.fast_dev_run=true"], tmp_path))
    assert "finished before" in capsys.readouterr().out
    assert np.isnan(first) and np.isnan(again)


# ---- report -------------------------------------------------------------------------------------
def test_report_lists_unfinished_jobs_and_matches_numpy(tmp_path):
    sweep = tmp_path / "sweep"
    values = {("fcn8s", 1): 0.61, ("fcn8s", 2): 0.65, ("fcn32s", 1): 0.52, ("fcn32s", 2): 0.50}
    for n, ((head, seed), value) in enumerate(values.items()):
        record = {
            "status": "finished",
            "overrides": ["data.batch_size=4", f"head={head}", f"seed={seed}"],
            "metrics": {"best_val_mIoU": value, "test/mIoU": value - 0.01},
        }
        (sweep / str(n)).mkdir(parents=True)
        (sweep / str(n) / RESULT_FILE).write_text(json.dumps(record))
    failed = {"status": "failed", "overrides": ["data.batch_size=4", "head=fcn8s", "seed=3"]}
    (sweep / "4").mkdir()
    (sweep / "4" / RESULT_FILE).write_text(json.dumps({**failed, "error": "DataError: x"}))
    (sweep / "5" / ".hydra").mkdir(parents=True)  # Hydra made it; the job never started
    overrides = "- data.batch_size=4\n- head=fcn32s\n- seed=3\n"
    (sweep / "5" / ".hydra" / "overrides.yaml").write_text(overrides)

    markdown = write_report(sweep)
    lines = markdown.splitlines()
    assert lines.index("| head | n | best_val_mIoU | test/mIoU |") + 3 == lines.index(
        "| fcn32s | 2 | 0.5100 ± 0.0141 | 0.5000 ± 0.0141 |"
    )  # fcn8s (0.63) first
    assert "- failed: head=fcn8s seed=3 (4): DataError: x" in markdown
    assert "- not started: head=fcn32s seed=3 (5)" in markdown
    rows = (sweep / "report.csv").read_text().splitlines()
    assert rows[0].startswith("head,n,best_val_mIoU_mean,best_val_mIoU_std,best_val_mIoU_n,")
    best = rows[1].split(",")
    assert best[0] == "fcn8s" and float(best[3]) == pytest.approx(np.std([0.61, 0.65], ddof=1))
    assert (sweep / "report.png").read_bytes()[:4] == b"\x89PNG"


# ---- resumable sweeps (any launcher: the logic is in the job) ---------------------------------
@pytest.mark.slow
def test_rerun_sweep_skips_finished_resumes_interrupted_and_reports_seeds(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    # 8 images, batch 2: 4 steps; job 1 (seed=1 head=fcn8s) is stopped mid-epoch at step 2.
    args = [
        "-m",
        "seed=1,2,3",
        "head=fcn32s,fcn8s",
        *tiny(data_dir, num_train=8, batch_size=2),
        "test_after_fit=false",
        f"hydra.sweep.dir={sweep}",
    ]
    marker = tmp_path / "paused"
    proc = popen_cli([*args, *pause(marker, [2], job=1)], tmp_path)
    assert wait_for(Path(f"{marker}.2"), proc).startswith("1 ")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    before = results(sweep)
    assert sorted(r["status"] for r in before.values()) == ["finished", "interrupted"]

    out = ok(run_cli([*args, *pause(marker, [2], job=1)], tmp_path))
    assert out.count("finished before") == 1  # job 0
    assert out.count("continuing this job from") == 1  # job 1, from its mid-epoch last.ckpt
    assert len(SUMMARY.findall(out)) == 5  # jobs 1..5 ran; job 0 did not
    after = results(sweep)
    assert len(after) == 6 and all(r["status"] == "finished" for r in after.values())
    assert all(r["global_step"] == 4 for r in after.values())

    report = subprocess.run(
        [sys.executable, "-m", "fcn.report", str(sweep)],
        env=one_thread_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = re.findall(r"^\| (fcn\d+s) \| (\d) \| ([\d.]+) ± ([\d.]+) \|", report.stdout, re.M)
    assert len(rows) == 2, report.stdout + report.stderr
    for head, n, mean, std in rows:
        values = [r["value"] for r in after.values() if f"head={head}" in r["overrides"]]
        assert n == "3" and len(values) == 3
        assert float(mean) == pytest.approx(np.mean(values), abs=5e-5)
        assert float(std) == pytest.approx(np.std(values, ddof=1), abs=5e-5)
    assert float(rows[0][2]) >= float(rows[1][2])  # best first
    with (sweep / "report.csv").open() as f:
        for row in csv.DictReader(f):  # full precision; the last val loss differs by seed
            head = f"head={row['head']}"
            losses = [r["metrics"]["val/loss"] for r in after.values() if head in r["overrides"]]
            assert len(set(losses)) == 3
            assert float(row["val/loss_mean"]) == pytest.approx(np.mean(losses), rel=1e-12)
            assert float(row["val/loss_std"]) == pytest.approx(np.std(losses, ddof=1), rel=1e-9)


@pytest.mark.slow
def test_optuna_search_killed_after_two_trials_ends_with_four(tmp_path, data_dir):
    import optuna

    sweep = tmp_path / "search"
    searched = [a for a in tiny(data_dir) if not a.startswith("data.batch_size=")]
    args = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "test_after_fit=false",
        f"hydra.sweep.dir={sweep}",
        *searched,
    ]
    marker = tmp_path / "paused"
    proc = popen_cli([*args, *pause(marker, [1], job=2)], tmp_path)
    wait_for(Path(f"{marker}.1"), proc)
    proc.kill()  # no goodbye: trial 2 stays RUNNING in the study
    proc.communicate(timeout=60)
    storage = f"sqlite:///{sweep}/optuna.db"
    study = optuna.load_study(study_name="fcn_val_mIoU", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]

    out = ok(run_cli([*args, *pause(marker, [1], job=2)], tmp_path))
    assert len(SUMMARY.findall(out)) == 2  # trial 2 again, then trial 3
    study = optuna.load_study(study_name="fcn_val_mIoU", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 4  # the continued search does not repeat earlier draws
    assert len(results(sweep)) == 4  # trial 2 ran in its own job dir again


# ---- real SLURM ---------------------------------------------------------------------------------
def _slurm_skip_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch not found: bring up a one-node SLURM with `bash scripts/slurm_local.sh`"
    try:
        info = subprocess.run(
            ["sinfo", "-h", "-o", "%T %c"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"SLURM is not answering ({err}); see scripts/slurm_local.sh"
    nodes = [line.split() for line in info.stdout.splitlines() if line.strip()]
    usable = [n for n in nodes if n[0].rstrip("*~#").startswith(("idle", "mixed", "alloc"))]
    if info.returncode != 0 or not usable:
        return f"SLURM has no usable node (sinfo: {(info.stdout + info.stderr).strip()!r})"
    if max(int(n[1]) for n in usable) < 2:
        return "the SLURM node has fewer than 2 CPUs (the DDP job needs 2 tasks)"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:  # asked once: an absent controller takes sinfo ~10 s to report
    reason = _slurm_skip_reason()
    if reason:
        pytest.skip(reason)


def release_requeued(job: str, timeout: float = 120) -> None:
    """A requeued job waits 2 minutes (SLURM's BeginTime); start it now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True
        ).stdout.strip()
        if state.startswith("PENDING"):
            subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
            return
        time.sleep(0.2)
    pytest.fail(f"job {job} was not requeued (squeue: {state!r})")


def tb_steps(run: Path) -> dict[str, list[int]]:
    """Steps per scalar tag over all event files of one TensorBoard run, in writing order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    def order(path: Path) -> tuple[float, int]:
        parts = path.name.split(".")  # events.out.tfevents.<time>.<host>.<pid>.<n>
        return float(parts[3]), int(parts[-1])

    steps: dict[str, list[int]] = {}
    for path in sorted(run.glob("events.out.tfevents.*"), key=order):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag != "hparams" and not value.tag.startswith("_hparams_"):
                    steps.setdefault(value.tag, []).append(event.step)
    return steps


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_sweep_of_ddp_jobs_matches_one_process(slurm, tmp_path, data_dir):
    # The weights to evaluate, and their metrics in one process (in this process: no start-up).
    with one_thread():
        train(_compose([*tiny(data_dir), "test_after_fit=false"], tmp_path / "fit"))
        ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
        same = [*tiny(data_dir), f"init_from={ckpt}", "trainer.max_epochs=0"]
        train(_compose(same, tmp_path / "single"))
    single = json.loads((tmp_path / "single" / RESULT_FILE).read_text())["metrics"]

    # A 2-point sweep on SLURM; each job is 2 ranks started by srun (3 val images: odd split).
    sweep = tmp_path / "sweep"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    args = ["-m", *SLURM, *ddp, *same, "seed=1,2", f"hydra.sweep.dir={sweep}"]
    ok(run_cli(args, tmp_path, timeout=600))
    jobs = results(sweep)
    assert len(jobs) == 2
    for record in jobs.values():
        assert record["status"] == "finished" and record["slurm_job_id"]
        metrics = record["metrics"]
        # summed per pixel on each rank, then synced: equal up to the order of the sums
        assert metrics.pop("test/loss") == pytest.approx(single["test/loss"], rel=1e-6)
        assert {k: v for k, v in single.items() if k != "test/loss"} == metrics
    logs = sorted(p.name for p in sweep.glob(".submitit/*_*/*_log.out"))
    assert len(logs) == 4 and sum(name.endswith("_1_log.out") for name in logs) == 2  # 2 tasks


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_preempted_and_requeued_job_continues_where_it_stopped(slurm, tmp_path, data_dir):
    # 8 images, batch 2: 4 steps per epoch, 2 epochs. USR2 (submitit's pre-emption/time-limit
    # signal) at step 2, `scontrol requeue` (SIGTERM, SLURM requeues) at step 6: both mid-epoch.
    # One DataLoader worker: it must ignore the signals the whole job gets.
    common = [*tiny(data_dir, num_train=8, batch_size=2), "trainer.max_epochs=2", "seed=7"]
    sweep = tmp_path / "sweep"
    marker = tmp_path / "paused"
    job_args = [*SLURM, *common, "data.num_workers=1", f"hydra.sweep.dir={sweep}"]
    proc = popen_cli(["-m", *job_args, *pause(marker, [2, 6])], tmp_path)
    job = wait_for(Path(f"{marker}.2"), proc).split()[1]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    release_requeued(job)
    assert wait_for(Path(f"{marker}.6"), proc).split()[1] == job  # the same SLURM job, again
    subprocess.run(["scontrol", "requeue", job], check=True)
    release_requeued(job)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]

    # The same run without interruption, in this process.
    with one_thread():
        train(_compose(common, tmp_path / "straight"))
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)

    ((_, record),) = results(sweep).items()
    run = record["dir"]
    assert record["status"] == "finished" and record["global_step"] == 8
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == straight["global_step"] == 8
    for name, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, atol=1e-6, rtol=0)
    # One TensorBoard run continued across the three job starts: per tag, the steps never go
    # back and are exactly those of the uninterrupted run (nothing logged twice or lost).
    steps, straight_steps = (
        tb_steps(run / "tensorboard"),
        tb_steps(tmp_path / "straight" / "tensorboard"),
    )
    assert steps["train/loss_step"] == list(range(8)) and steps["val/mIoU"] == [3, 7]
    for tag, seen in steps.items():
        assert seen == sorted(seen), f"{tag}: steps {seen} go back"
    assert steps == straight_steps
    assert [p.name for p in (run / "checkpoints").glob("best-*.ckpt")] == [
        Path(record["checkpoint"]).name
    ]
    assert "-v1" not in record["checkpoint"]

    log = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))  # .out and .err

    def lines(pattern: str) -> set[str]:  # submitit's warnings go to both files
        return set(re.findall(pattern, log, re.M))

    assert "interrupted at step 2" in log and "interrupted at step 6" in log
    assert log.count("continuing this job from") == 2
    assert "DataLoader worker" not in log and "exited unexpectedly" not in log
    # SIGCONT comes with SLURM's SIGTERM (2 requeues); only the main process may log it (its 2
    # live DataLoader workers did too, before worker_init reset it)
    assert len(lines(r"^submitit WARNING .* Bypassing signal SIGCONT.*$")) <= 2
    # submitit's handler ran once, in the main process, after last.ckpt (not in the workers)
    assert len(lines(r"^submitit INFO .* Calling checkpoint method.*$")) == 1
