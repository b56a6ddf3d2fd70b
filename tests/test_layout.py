"""The package's shape: small modules, and data loading independent of how ranks are started."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 300


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO_ROOT / folder).rglob("*.py"))


def test_no_module_over_300_lines():
    sizes = {p: len(p.read_text().splitlines()) for p in _python_files("fcn", "scripts")}
    long = [f"{p.relative_to(REPO_ROOT)} ({n})" for p, n in sizes.items() if n > MAX_LINES]
    assert not long, f"split these modules: {long}"


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_data_imports_nothing_from_the_rank_launcher():
    for path in _python_files("fcn/data"):
        assert "fcn.jobs.distributed" not in _imported_modules(path), path.relative_to(REPO_ROOT)
