"""Where the Hydra config tree is: `fcn/conf` inside an installed wheel (pyproject packages the
top-level `conf/` there), else the repository's `conf/` beside `fcn/` (a clone, editable or not)."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


def data_options_with(num_classes: int, conf: Path | None = None) -> list[str]:
    """The `data=` options of conf/data whose data has `num_classes` classes (the length of an
    option's `classes` list, else its `num_classes`, else those of the option its defaults
    list starts from)."""
    import yaml

    folder = (conf or config_dir()) / "data"

    def classes(option: str, seen: tuple[str, ...] = ()) -> object:
        path = folder / f"{option}.yaml"
        if option in seen or not path.is_file():
            return None
        node = yaml.safe_load(path.read_text()) or {}
        if isinstance(node.get("classes"), list):
            return len(node["classes"])
        if node.get("num_classes") is not None:
            return node["num_classes"]
        bases = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]
        return next((c for b in bases if (c := classes(b, (*seen, option))) is not None), None)

    return sorted(p.stem for p in folder.glob("*.yaml") if classes(p.stem) == num_classes)
