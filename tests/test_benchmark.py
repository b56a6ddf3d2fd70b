"""scripts/benchmark.py --quick runs end to end and writes the documented JSON keys and types."""

from __future__ import annotations

import importlib
import json
import os
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


def _script(name: str):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))


def _bench_realdata():
    return _script("bench_realdata")


def test_realdata_skips_with_a_message_where_files_are_absent(tmp_path: Path) -> None:
    weights = tmp_path / "no_weights.pth"
    result = _bench_realdata().measure(False, tmp_path / "no_voc", tmp_path / "run", weights)
    assert list(result) == ["realdata_skipped"]
    assert "no_voc" in result["realdata_skipped"] and "no_weights.pth" in result["realdata_skipped"]
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.slow  # benchmark.py, then fcn.train on the preset for a few batches: ~15 s
def test_quick_realdata_runs_the_preset(
    tmp_path: Path, voc_mini: Path, mobilenet_v2_features: Path
) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            *(sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), "--quick"),
            *("--only", "realdata", "--voc-root", str(voc_mini), "--out", str(out)),
        ],
        cwd=tmp_path,
        env={**os.environ, "FCN_MOBILENET_V2_WEIGHTS": str(mobilenet_v2_features)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "experiment=voc_mobilenet_cpu" in result["realdata_command"]
    assert 0.0 <= result["realdata_val_mIoU"] <= 1.0
    assert result["realdata_test_mIoU"] == pytest.approx(result["realdata_val_mIoU"], abs=1e-4)
    assert result["realdata_wall_s"] > result["realdata_train_s"] > 0
    assert result["realdata_train_images_per_s"] > 0
    (epoch,) = result["realdata_epochs"]  # --quick: one epoch of 2 batches of 2
    assert epoch["images"] == 4 and epoch["val_s"] > 0 and len(epoch["load"]) == 3
    assert "background" in result["realdata_per_class_iou"]
    assert set(result["targets_met"]) == {"realdata_val_mIoU", "realdata_wall_s"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_ablation_rows_join_their_overrides_and_tabulate(tmp_path: Path) -> None:
    ablation = _script("ablation")
    assert ablation.overrides("preset") == ["seed=42"]
    joined = ablation.overrides("ohem+ema")
    assert joined == [
        "seed=42",
        "loss=ohem",
        "loss.min_kept=10000",
        "callbacks=ema",
        "callbacks.ema.decay=0.99",
    ]
    assert ablation.overrides("seed43+aux")[0] == "seed=43"  # the first row's seed is kept
    with pytest.raises(SystemExit, match="unknown row 'sgd'"):
        ablation.overrides("aux+sgd")
    # The row's overrides go into the user's command, before the benchmark's own.
    cmd = _bench_realdata().command(tmp_path, tmp_path / "w.pth", tmp_path / "run", False, joined)
    assert cmd[cmd.index("experiment=voc_mobilenet_cpu") + 3 :][:5] == joined

    def result(miou: float, overrides: list[str]) -> str:
        return json.dumps(
            {
                "overrides": overrides,
                "realdata_val_mIoU": miou,
                "realdata_test_pixel_acc": 0.8512,
                "realdata_wall_s": 725.4,
                "realdata_load_start": [1.2, 1.0, 1.0],
                "realdata_epochs": [{"load": [1.5, 1.0, 1.0]}, {"load": [2.3, 1.0, 1.0]}],
            }
        )

    (tmp_path / "ohem+ema.json").write_text(result(0.4567, joined))
    (tmp_path / "ema.json").write_text(result(0.4, ablation.overrides("ema")))
    assert ablation.table(tmp_path).splitlines()[-1] == (
        "| ohem+ema | `seed=42 loss=ohem loss.min_kept=10000 callbacks=ema "
        "callbacks.ema.decay=0.99` | 0.457 |  | 0.851 | 12 min 05 s | 1.2-2.3 |"
    )
    (tmp_path / "preset.json").write_text(result(0.4321, ["seed=42"]))
    columns = [
        [c.strip() for c in line.split("|")[1:-1]] for line in ablation.table(tmp_path).splitlines()
    ]
    # ROWS' order, then combinations; each row's mIoU against the preset's at its seed
    assert [(c[0], c[3]) for c in columns[2:]] == [
        ("preset", ""),
        ("ema", "-0.032"),
        ("ohem+ema", "+0.025"),
    ]
    (tmp_path / "seed43+ema.json").write_text(result(0.4, ["seed=43", "callbacks=ema"]))
    (tmp_path / "seed43.json").write_text(result(0.41, ["seed=43"]))
    versus = {
        line.split("|")[1].strip(): line.split("|")[4].strip()
        for line in ablation.table(tmp_path).splitlines()[2:]
    }
    assert versus["seed43+ema"] == "-0.010" and versus["seed43"] == "-0.022"


def test_ablation_checks_every_row_first_and_keeps_an_interrupted_rows_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ablation = _script("ablation")
    out = tmp_path / "ablation"
    (out / "preset" / "checkpoints").mkdir(parents=True)  # a run stopped before its result
    (out / "preset" / "checkpoints" / "last.ckpt").write_bytes(b"progress")
    argv = ["ablation.py", "--out", str(out), "--voc-root", str(tmp_path / "no_voc")]
    monkeypatch.setattr(sys, "argv", [*argv, "preset", "ema+sgd"])
    with pytest.raises(SystemExit, match="unknown row 'sgd'"):
        ablation.main()
    assert (out / "preset" / "checkpoints" / "last.ckpt").is_file()  # nothing ran or moved
    monkeypatch.setattr(sys, "argv", [*argv, "preset"])
    with pytest.raises(SystemExit, match="no_voc"):  # the data is absent: one line naming it
        ablation.main()
    (kept,) = out.glob("preset.unfinished-*")
    assert (kept / "checkpoints" / "last.ckpt").read_bytes() == b"progress"
    assert not (out / "preset").exists() and not list(out.glob("*.json"))
