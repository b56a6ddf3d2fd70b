"""fcn-report: a sweep's table (mean and sample std over seeds), unfinished jobs listed, not
dropped.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcn.jobs.job_record import RESULT_FILE
from fcn.report import write_report


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
