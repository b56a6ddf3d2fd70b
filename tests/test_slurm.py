"""A real SLURM (scripts/slurm_local.sh): a sweep of DDP jobs under srun, a pre-empted job requeued
and continued. Skipped, saying why, where sbatch is absent or the cluster does not answer;
nothing here needs SLURM's accounting database (sacct).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers.cli_runs import compose_train, ok, tiny
from helpers.jobs import SLURM, one_thread, pause, popen_cli, results, run_cli, wait_for

from fcn.jobs.job_record import RESULT_FILE
from fcn.train import train


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
        train(compose_train([*tiny(data_dir), "test_after_fit=false"], tmp_path / "fit"))
        ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
        same = [*tiny(data_dir), f"init_from={ckpt}", "trainer.max_epochs=0"]
        train(compose_train(same, tmp_path / "single"))
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
        train(compose_train(common, tmp_path / "straight"))
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
