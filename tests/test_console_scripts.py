"""The installed console scripts (pyproject's [project.scripts]) work from any directory: each
`--help`, and a tiny real run through `fcn-train`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.user_commands import BIN_DIR, SUMMARY, cli_env, run, tiny_train, warning_lines

# script -> a line its --help must print
HELP_LINES = {
    "fcn-train": "== Config groups: pick an option with group=option ==",
    "fcn-eval": "python -m fcn.evaluate ckpt_path=FILE",
    "fcn-predict": "python -m fcn.predict [backend=torch|onnx|exported_program] model=FILE",
    "fcn-export": "python -m fcn.export ckpt_path=FILE",
    "fcn-data": "usage: fcn-data",
    "fcn-report": "usage: fcn-report",
}


def script(name: str) -> str:
    path = BIN_DIR / name
    assert path.is_file(), f"{path} missing: install the package (pip install -e '.[dev]')"
    return str(path)


def help_text(name: str, cwd: Path) -> str:
    result = run([script(name), "--help"], cwd, cli_env(cwd / "cache"), timeout=120)
    assert HELP_LINES[name] in result.stdout, result.stdout[-2000:]
    assert not warning_lines(result), warning_lines(result)
    assert not list(cwd.iterdir())  # --help writes nothing (no outputs/ either)
    return result.stdout


def test_fcn_train_help_from_another_directory_names_hydras_own_launcher(tmp_path):
    text = help_text("fcn-train", tmp_path)
    assert "hydra/launcher (default: basic, Hydra's own" in text
    assert "(default: none)\n  local" not in text


# ~5-10 s each on 2 shared cores (a process that imports torch): with the slow tests.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(HELP_LINES) - {"fcn-train"}))
def test_console_script_help_from_another_directory(name, tmp_path):
    help_text(name, tmp_path)


@pytest.mark.slow
def test_fcn_train_console_script_trains_and_says_where(tmp_path):
    result = run([script("fcn-train"), *tiny_train()], tmp_path, cli_env(tmp_path / "cache"))
    summary = SUMMARY.search(result.stdout)
    assert summary, result.stdout[-2000:]
    checkpoint = Path(summary.group(2))
    assert checkpoint.is_file() and (checkpoint.parent / "last.ckpt").is_file()
    assert checkpoint.is_relative_to(tmp_path / "outputs")  # the run lands where it was started
