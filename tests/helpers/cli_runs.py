"""Running fcn-train in tests: tiny-run overrides, the CLI as a subprocess, composed configs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

CONF = Path(__file__).resolve().parents[2] / "conf"


TESTS = Path(__file__).resolve().parents[1]


# The smallest useful synthetic data (8 train / 2 val images of 64 px) on CPU, no workers.
TINY_SYNTHETIC = [
    "data.synthetic.num_train=8",
    "data.synthetic.num_val=2",
    "data.synthetic.size=[64,64]",
    "data.crop_size=[64,64]",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.persistent_workers=false",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]
SUMMARY = re.compile(r"^best val/mIoU=(\d\.\d{4}) checkpoint=(\S+) logs=(\S+)$", re.M)


def tiny(data_dir: Path, num_train: int = 6, batch_size: int = 3) -> list[str]:
    """A seconds-long run; the val split has 3 images (odd: does not split over 2 ranks)."""
    return [
        f"data.root={data_dir}",
        f"data.synthetic.num_train={num_train}",
        "data.synthetic.num_val=3",
        "data.synthetic.size=[64,64]",
        "data.crop_size=[64,64]",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
    ]


def cli_env() -> dict[str, str]:
    # tests/ on the path: the interrupt test adds a callback defined in this file.
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "fcn.train", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def run_dirs(cwd: Path) -> list[Path]:
    """Single-run directories (outputs/<date>/<time>) under cwd."""
    return sorted(p for p in (cwd / "outputs").glob("*/*") if p.parent.name != "multirun")


# ---- switches ---------------------------------------------------------------------------------
def compose_train(overrides: list[str], output_dir: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", [*overrides, f"paths.output_dir={output_dir}"])
