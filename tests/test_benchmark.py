"""scripts/benchmark.py --quick runs end to end and writes the documented JSON keys and types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

FLOAT_KEYS = (
    "framework_ratio",
    "framework_fit_images_per_s",
    "framework_plain_images_per_s",
    "loader_images_per_s",
    "train_images_per_s_fcn8s_resnet18_b8",
    "loader_to_train_ratio",
    "eval_images_per_s",
    "forward_images_per_s",
    "eval_to_forward_ratio",
    "forward_ratio_vs_seed",
    "forward_ms_ours_fcn32s",
    "forward_ms_seed_fcn32s",
    "peak_rss_mb",
    "peak_rss_tree_sum_mb",
    "peak_pss_tree_sum_mb",
    "predict_images_per_s_torch",
    "predict_images_per_s_onnx",
    "predict_forward_images_per_s",
    "predict_to_forward_ratio",
)
MACHINE_KEYS = {"cpu_model": str, "cpu_count": int, "torch": str, "torch_threads": int}


@pytest.mark.slow  # two Python processes with torch + Lightning and a short fcn.train run: ~40 s
def test_quick_benchmark_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result  # stdout carries exactly the JSON
    assert result["quick"] is True
    for key in FLOAT_KEYS:
        value = result[key]
        assert isinstance(value, float), (key, value)
        assert value > 0, (key, value)
    assert result["forward_max_abs_diff_vs_seed"] < 1e-3  # the seed copy has our weights
    assert isinstance(result["peak_rss_note"], str) and "quick" in result["peak_rss_note"]
    for key, kind in MACHINE_KEYS.items():
        assert isinstance(result["machine"][key], kind), key
    assert result["machine"]["torch_threads"] >= 1
    assert set(result["targets_met"]) >= {"framework_ratio", "peak_rss_mb"}
    assert all(isinstance(v, bool) for v in result["targets_met"].values())
    # nothing from the fcn.train run lands in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]
