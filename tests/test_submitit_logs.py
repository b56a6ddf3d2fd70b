"""submitit's log lines: its sacct warning once per sweep command (it came three times per
poll), and in a job its INFO lines on stderr, so the summary stays the last line of `_log.out`."""

from __future__ import annotations

import subprocess
import sys

from helpers.user_commands import REPO_ROOT

SACCT = (
    "Call #{} - Bypassing sacct error [Errno 2] No such file: 'sacct', status may be inaccurate."
)


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, logging set up as in a sweep: Hydra's root handler on
    stdout, then submitit's own (imported as hydra-submitit-launcher imports it)."""
    prelude = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "from fcn.cli.entry import prepare_process\n"
        "prepare_process()\n"
        "import submitit\n"
        "from submitit.core import logger\n"
        "log = logger.get_logger()\n"
    )
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        check=True,
    )


def test_sacct_warning_is_printed_once_for_many_polls():
    result = python(f"for i in range(5): log.warning({SACCT!r}.format(i))")
    output = result.stdout + result.stderr
    assert output.count("Bypassing sacct error") == 1, output
    assert "shown once" in result.stderr


def test_other_submitit_warnings_still_show():
    result = python("log.warning('Bypassing state error: x')")
    assert "Bypassing state error" in result.stdout + result.stderr


def test_in_a_job_submitit_info_goes_to_stderr_only():
    code = "print('best val/mIoU=0.5 checkpoint=x logs=y'); log.info('Job completed successfully')"
    result = python(code, SUBMITIT_EXECUTOR="local")
    assert result.stdout.strip().splitlines()[-1].startswith("best val/mIoU=")
    assert "Job completed successfully" in result.stderr
    # outside a job (the sweep command itself) submitit's INFO lines stay where they were
    outside = python("log.info('Job completed successfully')")
    assert "Job completed successfully" in outside.stdout
