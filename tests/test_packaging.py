"""The wheel: built from this checkout, installed into a fresh virtual environment, its console
scripts work from any directory (they carry the config tree); a user's own config directory adds
options without editing the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers.cli_runs import TINY_SYNTHETIC

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("fcn-train", "fcn-eval", "fcn-predict", "fcn-export", "fcn-data", "fcn-report")


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of what the wheel is built from, so the build leaves no build/ in the checkout.
    source = out / "source"
    for name in ("fcn", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    # the build backend of this environment: no download of setuptools
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    run([*pip, "-w", str(out), str(source)], cwd=out)
    (path,) = out.glob("fcn-*.whl")
    return path


def test_wheel_carries_every_config_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"fcn/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")}
    assert expected and expected <= names, sorted(expected - names)[:5]
    assert "hydra_plugins/fcn_optuna_sweeper/__init__.py" in names


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_its_console_scripts_from_any_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # fcn from the wheel alone; its dependencies (torch & co.) from this environment's
    # site-packages, added after the fresh venv's own (a path in a .pth file runs no .pth of its
    # own, so this environment's editable fcn stays invisible)
    fresh_site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=tmp_path).stdout.strip()  # fmt: skip
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path
    )
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FCN_CACHE"] = str(tmp_path / "cache")
    where = run([str(python), "-c", "import fcn; print(fcn.__file__)"], elsewhere, env).stdout
    assert where.startswith(fresh_site), where  # the installed wheel, not this checkout
    assert all((venv / "bin" / script).is_file() for script in SCRIPTS)
    for script in ("fcn-train", "fcn-eval", "fcn-data"):  # Hydra's --help and argparse's
        out = run([str(venv / "bin" / script), "--help"], elsewhere, env).stdout
        assert "usage" in out.lower() or "== Config groups" in out, (script, out[:500])
    train = run([str(venv / "bin" / "fcn-train"), "debug=fdr", *TINY_SYNTHETIC], elsewhere, env)
    assert "best val/mIoU=" in train.stdout, train.stdout[-2000:]
    assert (elsewhere / "outputs").is_dir()


def test_user_config_dir_adds_a_data_option(tmp_path: Path):
    mine = tmp_path / "my_conf" / "data"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text(
        "# My data: the synthetic set, bigger crops.\n"
        "defaults:\n  - synthetic\n  - _self_\n\ncrop_size: [96, 96]\nbatch_size: 5\n"
    )
    env = {**os.environ, "FCN_CACHE": str(tmp_path / "cache")}
    for extra in (["--config-dir", str(tmp_path / "my_conf")],
                  [f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"]):  # fmt: skip
        args = [sys.executable, "-m", "fcn.train", *extra, "data=mine", "--cfg", "job"]
        out = run(args, cwd=tmp_path, env=env).stdout
        assert "batch_size: 5" in out and "- 96" in out, out[:2000]
        assert (
            "_target_: fcn.data.SegmentationDataModule" in out
        )  # the rest from the package's synthetic
