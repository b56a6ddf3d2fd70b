"""The package's shape: small modules, subpackages that import only downward, a README module map
that is the folder tree, and a wheel configuration that carries every config folder."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
FCN = REPO_ROOT / "fcn"
MAX_LINES = 300
# What each subpackage may import from fcn (besides itself). Entry points (the top-level
# modules, and fcn-data's fcn/data/prepare.py) and the notebook API may import anything.
MAY_IMPORT = {
    "core": set(),
    "models": {"core"},
    "data": {"core"},
    "training": {"core", "models", "data"},
    "jobs": {"core", "training"},
    "deploy": {"core", "models", "training"},
    "cli": {"core", "data", "jobs"},
}


def _entry_points() -> set[str]:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {target.split(":")[0].replace(".", "/") + ".py" for target in scripts.values()}


ENTRY_POINTS = _entry_points()


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO_ROOT / folder).rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_no_module_over_300_lines():
    sizes = {p: len(p.read_text().splitlines()) for p in _python_files("fcn", "scripts")}
    long = [f"{p.relative_to(REPO_ROOT)} ({n})" for p, n in sizes.items() if n > MAX_LINES]
    assert not long, f"split these modules: {long}"


def test_subpackages_import_only_downward():
    assert set(MAY_IMPORT) == {p.name for p in FCN.iterdir() if (p / "__init__.py").is_file()}
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in _python_files(f"fcn/{package}"):
            if path.relative_to(REPO_ROOT).as_posix() in ENTRY_POINTS:
                continue
            for module in _imported_modules(path):
                parts = module.split(".")
                if parts[0] == "fcn" and len(parts) > 1 and parts[1] != package:
                    if parts[1] not in allowed:
                        wrong.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert not wrong, wrong


def test_data_imports_nothing_of_how_jobs_are_run():
    for path in _python_files("fcn/data"):
        jobs = [m for m in _imported_modules(path) if m.startswith("fcn.jobs")]
        assert not jobs, (path.relative_to(REPO_ROOT), jobs)


def test_readme_module_map_is_the_folder_tree():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Where things live") :]
    section = section[: section.index("\n### ", 10)]
    named = set(re.findall(r"`(fcn/[\w/]+\.py|fcn/\w+/)`", section))
    # a module named in a folder's row by its file name: `fcn/deploy/` ... `inference.py`
    rows = re.findall(r"^\| `(fcn/\w+/)`[^|]*\|(.*)\|$", section, flags=re.M)
    for folder, text in rows:
        named.update(f"{folder}{name}" for name in re.findall(r"`(\w+\.py)`", text))
    top = {f"fcn/{p.name}" for p in FCN.glob("*.py") if p.name != "__init__.py"}
    folders = {f"fcn/{p.name}/" for p in FCN.iterdir() if (p / "__init__.py").is_file()}
    modules = {
        str(p.relative_to(REPO_ROOT))
        for p in FCN.glob("*/*.py")
        if p.name != "__init__.py" and p.parent.name != "optuna_sweeper"
    }
    missing = sorted((top | folders | modules) - named)
    assert not missing, f"README 'Where things live' does not name: {missing}"
    gone = sorted(n for n in named if not (REPO_ROOT / n).exists())
    assert not gone, f"README 'Where things live' names what does not exist: {gone}"


def test_every_config_folder_is_packaged_into_the_wheel():
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    conf = REPO_ROOT / "conf"
    folders = {"fcn.conf", *("fcn.conf." + ".".join(p.relative_to(conf).parts)
                             for p in conf.rglob("*") if p.is_dir())}  # fmt: skip
    assert folders <= set(packages), f"add to pyproject packages: {sorted(folders - set(packages))}"
