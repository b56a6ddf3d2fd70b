"""hparams_search=optuna: asynchronous workers over one study, pruning, faults, the report,
and bad input stopped before any job starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli_runs import CONF
from helpers.jobs import SLURM, one_thread_env, pause
from helpers.search import array_task, release_requeued, sweeper_path
from hydra import compose, initialize_config_dir

from fcn.core.errors import ConfigError
from fcn.jobs.optuna_study import open_storage
from fcn.jobs.optuna_sweeper import AsyncOptunaSweeper
from fcn.jobs.search_space import check_keys_exist, parse_search_space

STUDY = "fcn_val_mIoU"


def search_args(sweep: Path, data_dir: Path, trials: int, pruner: str) -> list[str]:
    return [
        "hparams_search=optuna",
        "hydra/launcher=local",
        f"hydra.sweeper.n_trials={trials}",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.pruner={pruner}",
        f"hydra.sweep.dir={sweep}",
        "test_after_fit=false",
        f"data.root={data_dir}",
        "data.synthetic.num_train=6",
        "data.synthetic.num_val=3",
        "data.synthetic.size=[64,64]",
        "data.crop_size=[64,64]",
        "data.batch_size=3",  # fixed: 2 steps an epoch, so a step names a point in an epoch
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
    ]


def search(args: list[str], cwd: Path, module: str = "fcn.train") -> subprocess.Popen:
    env = one_thread_env()
    extra = sweeper_path(cwd)
    if extra:
        env["PYTHONPATH"] = os.pathsep.join([extra, env["PYTHONPATH"]])
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def trials(sweep: Path) -> list:
    import optuna

    storage = open_storage(str(sweep / "optuna.journal"))
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def job_dir(sweep: Path, trial) -> Path:
    (path,) = sweep.glob(f"{trial.user_attrs.get('job_num', trial.number)}_*")
    return path


@pytest.mark.slow
def test_two_workers_eight_trials_prune_and_never_wait(tmp_path, data_dir):
    sweep = tmp_path / "search"
    code, out = finish(search(search_args(sweep, data_dir, 8, "median"), tmp_path))
    assert code == 0, out[-3000:]
    done = trials(sweep)
    states = [t.state.name for t in done]
    assert len(done) == 8 and set(states) <= {"COMPLETE", "PRUNED"}, states
    assert "PRUNED" in states
    assert len({tuple(sorted(t.params.items())) for t in done}) == 8  # no draw repeated
    pruned = next(t for t in done if t.state.name == "PRUNED")
    record = json.loads((job_dir(sweep, pruned) / "result.json").read_text())
    assert record["status"] == "pruned"
    assert record["value"] == pytest.approx(pruned.value)  # its last val/mIoU
    # Stopped at once: no step trained after the validation that pruned it (2 steps an epoch).
    for t in done:
        if t.state.name == "PRUNED":
            steps = json.loads((job_dir(sweep, t) / "result.json").read_text())["global_step"]
            assert steps == 2 * (t.user_attrs["pruned_at_epoch"] + 1), t.number
    assert (job_dir(sweep, pruned) / "checkpoints" / "last.ckpt").is_file()
    # No worker waits: each asks for its next trial as soon as its last one ends.
    by_worker: dict[int, list] = {}
    for t in sorted(done, key=lambda t: t.datetime_start):
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    assert sorted(by_worker) == [0, 1]
    for own in by_worker.values():
        for prev, nxt in zip(own, own[1:]):
            gap = (nxt.datetime_start - prev.datetime_complete).total_seconds()
            assert 0 <= gap < 2.0, (prev.number, nxt.number, gap)

    code, out = finish(search([str(sweep)], tmp_path, module="fcn.report"))
    assert code == 0, out[-3000:]
    assert "| trial | state |" in out and "- reproduce: `python -m fcn.train" in out
    assert "idle between trials" in out
    for name in ("study_history.png", "study_importances.png", "study_parallel.png"):
        assert (sweep / name).stat().st_size > 10_000


@pytest.mark.slow
def test_killed_worker_trial_is_finished_from_its_checkpoint(tmp_path, data_dir):
    sweep = tmp_path / "search"
    marker = tmp_path / "stalled"
    stall = [
        "+callbacks.stall._target_=helpers.search.StallAtStep",
        "+callbacks.stall.step=3",  # epoch 1: epoch 0's last.ckpt is on disk
        f"+callbacks.stall.marker={marker}",
        "+callbacks.stall.job=1",
    ]
    # 3 s without a pulse: the other worker retries the killed trial before the search ends.
    args = [*search_args(sweep, data_dir, 4, "none"), "hydra.sweeper.stale_after_s=3", *stall]
    proc = search(args, tmp_path)
    deadline = 240
    while not marker.exists() and proc.poll() is None and deadline > 0:
        subprocess.run(["sleep", "0.2"])
        deadline -= 0.2
    assert marker.exists(), finish(proc)[1][-3000:]
    subprocess.run(["sleep", "0.2"])
    os.kill(int(marker.read_text()), signal.SIGKILL)
    finish(proc)  # fails: submitit reports the killed job
    done = trials(sweep)
    assert "RUNNING" not in [t.state.name for t in done]
    code, out = finish(search(args, tmp_path))  # the same command again: nothing left to run
    assert code == 0 and "has its 4 trials; nothing to run" in out, out[-3000:]
    assert len(trials(sweep)) == len(done)
    states = [t.state.name for t in done]
    assert "RUNNING" not in states and states.count("COMPLETE") == 4, states
    (retry,) = [t for t in done if "retry_of" in t.user_attrs]
    killed = done[retry.user_attrs["retry_of"]]
    assert killed.state.name == "FAIL" and retry.params == killed.params
    assert len({tuple(sorted(t.params.items())) for t in done if t is not killed}) == 4
    # Continued from epoch 0's last.ckpt in the killed trial's directory: epochs 1 and 2 only.
    assert sorted(retry.intermediate_values) == [1, 2]
    assert job_dir(sweep, retry) == job_dir(sweep, killed)


def compose_search(overrides: list[str]):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", ["hparams_search=optuna", *overrides], return_hydra_config=True)


def test_search_space_from_params_and_command_line():
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    params = {"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "data.batch_size": "choice(4, 8)"}
    space, fixed = parse_search_space(params, ["seed=3", "data.batch_size=4"])
    assert space == {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}
    assert fixed == ["seed=3", "data.batch_size=4"]
    space, _ = parse_search_space({}, ["head=choice(fcn32s,fcn8s)"])
    assert space == {"head": CategoricalDistribution(["fcn32s", "fcn8s"])}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer.lr": "interval(0.1, 0.01)"}, "optimizer.lr: interval(0.1, 0.01) is empty"),
        ({"optimizer.lr": "interval(0.1, 0.1)"}, "is empty or inverted"),
        ({"optimizer.lr": "tag(log, interval(0, 1))"}, "not positive (log)"),
    ],
)
def test_bad_interval_is_one_line(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_search_space(params, [])


def test_unknown_searched_key_is_one_line():
    cfg = compose_search([])
    space, _ = parse_search_space({"optimizer.lrr": "interval(0.1, 0.2)", "head": "choice(a)"}, [])
    with pytest.raises(ConfigError, match=r"optimizer.lrr: no such key in the composed config"):
        check_keys_exist(space, cfg)
    check_keys_exist({"optimizer.lr": None, "head": None}, cfg)  # a value and a group


def test_more_workers_than_trials_and_unwritable_storage_stop_first(tmp_path):
    sweeper = AsyncOptunaSweeper(n_trials=2, n_jobs=3, storage=str(tmp_path / "s.journal"))
    sweeper.config = compose_search([])
    with pytest.raises(ConfigError, match=r"n_jobs=3 > n_trials=2"):
        sweeper._check([])
    blocked = tmp_path / "file"
    blocked.write_text("")
    for spec in (f"{blocked}/s.journal", f"sqlite:///{blocked}/s.db"):
        with pytest.raises(ConfigError, match=r"hydra.sweeper.storage: cannot write"):
            open_storage(spec)


def test_current_trial_uses_study_storage_and_study_id(tmp_path, monkeypatch):
    """A worker's training process rebuilds the asked trial from its number through the
    study's private `_storage` and `_study_id` (README "Private APIs"), and reports to it."""
    from fcn.jobs.optuna_study import TRIAL_ENV, current_trial, load_study, set_current_trial

    # Set in this process's environment, which every later test's subprocess inherits: the
    # setenv makes monkeypatch remove it again at teardown (a delenv of an absent key would not).
    monkeypatch.setenv(TRIAL_ENV, "")
    assert current_trial() is None
    spec = str(tmp_path / "s.journal")
    study = load_study(spec, STUDY, "maximize")
    study.ask()
    asked = study.ask()
    set_current_trial(spec, STUDY, "median", asked.number)
    trial = current_trial()
    assert trial.number == asked.number == 1
    trial.report(0.25, step=0)
    assert study.get_trials()[1].intermediate_values == {0: 0.25}


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_workers_one_requeued_mid_trial_finish_it_from_its_checkpoint(tmp_path, data_dir):
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not found: bring up a one-node SLURM with scripts/slurm_local.sh")
    sweep = tmp_path / "search"
    marker = tmp_path / "paused"
    args = [
        *search_args(sweep, data_dir, 8, "median"),
        *SLURM,
        *pause(marker, [3], job=2),  # trial 2, epoch 1: USR2 lands mid-epoch
    ]
    proc = search(args, tmp_path)
    deadline = time.monotonic() + 300
    while not Path(f"{marker}.3").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "trial 2 never reached step 3"
        time.sleep(0.2)
    time.sleep(0.2)
    job = Path(f"{marker}.3").read_text().split()[1]
    task = array_task(job)  # this worker alone
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    release_requeued(task)
    code, out = finish(proc, timeout=600)
    assert code == 0, out[-3000:]

    done = trials(sweep)
    states = [t.state.name for t in done]
    # The requeued worker finished its own trial: no retry, no failure, 8 trials in the end.
    assert len(done) == 8 and set(states) <= {"COMPLETE", "PRUNED"}, states
    params = {tuple(sorted(t.params.items())) for t in done}
    assert len(params) == 8
    record = json.loads((job_dir(sweep, done[2]) / "result.json").read_text())
    assert record["status"] in ("finished", "pruned") and record["slurm_job_id"] == job
    log = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    assert "continuing this job from" in log
    assert re.findall(r"finishing its interrupted trial (\d+)", log) == ["2"]
