"""`--help` for the entry points, generated from the config files themselves.

An entry point's help is its config's leading comment (usage, what it does), then its config
groups with every option and the option's description, then its top-level keys with the
comment above each. An option's description is the first sentence of its file's leading
comment block, so it cannot fall out of step with the file.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml

from fcn.core.config_tree import config_dir

# Hydra groups this project provides options for (listed for every entry point: any may -m),
# with Hydra's own default, which is not one of the files in conf/.
PROJECT_HYDRA_GROUPS = {
    "hydra/launcher": "basic, Hydra's own: a sweep's jobs one after another in this process",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`\"'])")
_WIDTH = 100


def entry_help(config_name: str, conf: Path | None = None) -> str:
    """The help text for `python -m fcn.<entry> --help` (config `conf/<config_name>.yaml`)."""
    conf = conf or config_dir()
    path = conf / f"{config_name}.yaml"
    text = path.read_text()
    header = "\n".join(_leading_comment(text))
    groups = [*_default_groups(text), *PROJECT_HYDRA_GROUPS.items()]
    parts = [header, "", "== Config groups: pick an option with group=option ==", ""]
    for group, default in groups:
        parts.append(_group_help(conf, group, default))
    parts += ["== Keys: change any with key=value (nested: a.b=value) ==", ""]
    parts.append(_keys_help(text))
    parts += [
        "Print the composed config: --cfg job [--resolve]. Hydra's own flags: --hydra-help.",
    ]
    # Hydra runs string.Template over the help text: a literal $ must be doubled.
    return "\n".join(parts).replace("$", "$$")


def description(path: Path) -> str:
    """The first sentence of a config file's leading comment ('' when it has none); a bare
    '#' line ends the paragraph it is taken from."""
    lines = _leading_comment(path.read_text())
    block = " ".join(lines[: lines.index("")] if "" in lines else lines)
    return _SENTENCE_END.split(block, maxsplit=1)[0].strip()


def group_options(conf: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


def _leading_comment(text: str) -> list[str]:
    """The comment lines before the first key, without '#' and Hydra's `@package` line."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if stripped:
                break
            continue
        body = stripped.lstrip("#").strip()
        if not body.startswith("@package"):
            lines.append(body)
    return lines


def _default_groups(text: str) -> list[tuple[str, str | None]]:
    """(group, default option) for each group in a primary config's defaults list."""
    found = []
    for item in (yaml.safe_load(text) or {}).get("defaults", []):
        if not isinstance(item, dict):
            continue  # _self_ or a plain config name
        ((key, value),) = item.items()
        if key.startswith("override ") or key == "hydra" or key.startswith("hydra/"):
            continue
        found.append((key.split("@")[0].lstrip("/"), value))
    return found


def _group_help(conf: Path, group: str, default: str | None) -> str:
    note = f"default: {default}" if default else "default: none"
    lines = [f"{group} ({note})"]
    options = group_options(conf, group)
    width = max((len(o) for o in options), default=0) + 2
    for option in options:
        lines.append(_wrapped(f"  {option:<{width}}", description(conf / group / f"{option}.yaml")))
    return "\n".join(lines) + "\n"


def _keys_help(text: str) -> str:
    """Each key (but defaults and `_`-keys) with its default and the comment block above it;
    keys whose value just follows another key (`${...}`) only when they have a comment."""
    values = yaml.safe_load(text) or {}
    comment: list[str] = []
    path: list[tuple[int, str]] = []  # (indent, key) of the mappings around this line
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z_]\w*):", line)
        if not match:
            comment = []
            continue
        indent, key = len(match.group(1)), match.group(2)
        path = [(i, k) for i, k in path if i < indent]
        keys = [k for _, k in path] + [key]
        path.append((indent, key))
        value = _lookup(values, keys)
        note, comment = " ".join(comment), []
        if keys[0] == "defaults" or key.startswith("_") or isinstance(value, dict):
            continue
        follows = isinstance(value, str) and value.startswith("${")
        if follows and not note:
            continue
        shown = f"  {'.'.join(keys)}={_yaml_value(value)}"
        lines.append(_wrapped(shown + "  ", note) if note else shown)
    return "\n".join(lines) + "\n"


def _lookup(values: object, keys: list[str]) -> object:
    for key in keys:
        values = values.get(key) if isinstance(values, dict) else None
    return values


def _yaml_value(value: object) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)


def _wrapped(lead: str, text: str) -> str:
    if not text:
        return lead.rstrip()
    return textwrap.fill(
        text, width=_WIDTH, initial_indent=lead, subsequent_indent=" " * min(len(lead), 30)
    )
