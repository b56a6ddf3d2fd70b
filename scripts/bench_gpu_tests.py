"""The `gpu` tests for scripts/bench_gpu.py (section `tests`): `pytest -m gpu tests` in a
subprocess under the section's time budget, read back from its JUnit XML (every test's outcome,
skip reasons)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, log


def run_gpu_tests(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fcn-gpu-tests-") as tmp:
        report = Path(tmp) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "tests",  # every test marked gpu (tests/test_gpu.py and the GPU halves elsewhere)
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
        ]
        # On the budget: SIGINT first, so pytest stops and still writes the report so far.
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            output, _ = proc.communicate(timeout=max(seconds - 20, 1))
            interrupted = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                output, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            interrupted = True
        if not report.is_file():
            return {
                "error": f"pytest wrote no report (exit {proc.returncode})",
                "output_tail": output[-2000:],
            }
        cases = parse_junit(report)
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    log(f"gpu tests: {counts}")
    result: dict[str, Any] = {"exit_status": proc.returncode, "counts": counts, "cases": cases}
    if interrupted:
        result["interrupted"] = f"stopped at the {seconds:.0f} s budget; cases lists what ran"
    if counts["failed"]:
        result["output_tail"] = output[-4000:]
    return result


def parse_junit(path: Path) -> list[dict[str, str]]:
    """[{"name", "outcome", "message"}] for each test case in a pytest JUnit XML file."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if not case.get("name"):  # the entry an interrupted session adds
            continue
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = (node.get("message") or node.text or "").strip()[:300]
                break
        cases.append({"name": case.get("name", ""), "outcome": outcome, "message": message})
    return cases
