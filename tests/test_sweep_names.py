"""Sweep job directories are named by the keys the sweep varies, and only by them; a job started
through submitit (hydra/launcher=local, the SLURM path on one machine) has the same quiet
output as a plain run, its summary the last line of `_log.out`."""

from __future__ import annotations

import pytest
import yaml
from helpers.user_commands import SUMMARY, cli_env, run, tiny_train, warning_lines

from fcn.jobs.run_names import job_dir_name


def sweep_dir_with(tmp_path, task: list[str]) -> str:
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": task}}})
    )
    return str(tmp_path)


def test_a_sweep_without_a_comma_list_names_jobs_by_number(tmp_path):
    task = ["head=fcn8s", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    assert job_dir_name(0, task, sweep_dir_with(tmp_path, task)) == "0"


def test_only_swept_keys_are_in_names(tmp_path):
    task = ["head=fcn32s,fcn8s", "trainer.max_epochs=1", "data.batch_size=2"]
    job = ["head=fcn8s", "trainer.max_epochs=1", "data.batch_size=2"]
    assert job_dir_name(1, job, sweep_dir_with(tmp_path, task)) == "1_head=fcn8s"


@pytest.mark.slow
def test_submitit_job_is_named_by_number_quiet_and_ends_with_the_summary(tmp_path):
    argv = ["python", "-m", "fcn.train", "-m", "hydra/launcher=local", "head=fcn32s"]
    argv += [*tiny_train(), "hydra.sweep.dir=sweep"]
    sweep = run(argv, tmp_path, cli_env(tmp_path / "cache"))
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [
        ".submitit",
        "0",
        "multirun.yaml",
    ]
    (out,) = (tmp_path / "sweep" / ".submitit").glob("*/*_0_log.out")
    err = out.with_name(out.name.replace("_log.out", "_log.err"))
    assert SUMMARY.match(out.read_text().rstrip().splitlines()[-1]), out.read_text()[-2000:]
    job_lines = [ln for ln in err.read_text().splitlines() if not ln.startswith("submitit INFO")]
    assert not warning_lines(sweep), warning_lines(sweep)
    text = "\n".join(job_lines)
    assert "LeafSpec" not in text and "Tip:" not in text and "log_every_n_steps" not in text, text
