"""README.md's commands run as printed: every fenced bash command (and python block), in order,
in one temporary directory, so that chains (train -> export -> predict the exported file) work
as a reader would type them, each without a warning line in its output. What is replaced,
appended or skipped, and why, is the table in tests/readme_commands.py. The log of what ran is
printed (pytest -s) and kept in the temporary directory as readme_commands.log."""

from __future__ import annotations

import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import readme_commands as table
import torch
import yaml
from helpers.user_commands import REPO_ROOT, cli_env, run, warning_lines

README = REPO_ROOT / "README.md"
FENCE = re.compile(r"^( *)```(bash|python)\n(.*?)^\1```", re.S | re.M)
ENTRY = {
    "fcn.train": "train",
    "fcn-train": "train",
    "fcn.evaluate": "eval",
    "fcn-eval": "eval",
    "fcn.export": "export",
    "fcn-export": "export",
    "fcn.predict": "predict",
    "fcn-predict": "predict",
}
CLASSES = {"synthetic": 6, "voc": 21}


@dataclass
class Command:
    line: int  # in README.md
    kind: str  # bash or python
    text: str  # as printed: continuations joined, comment dropped (python: the whole block)

    @property
    def key(self) -> str:
        return self.text.splitlines()[0] if self.kind == "python" else self.text


def readme_commands(text: str) -> list[Command]:
    commands = []
    for block in FENCE.finditer(text):
        indent, kind, body = block.groups()
        first = text.count("\n", 0, block.start()) + 2
        lines = [ln[len(indent) :] for ln in body.splitlines()]
        if kind == "python":
            commands.append(Command(first, kind, "\n".join(lines)))
            continue
        joined, start = "", first
        for number, line in enumerate(lines, first):
            if not joined:
                start = number
            if line.rstrip().endswith("\\"):
                joined += line.rstrip()[:-1] + " "
                continue
            command = " ".join(_drop_comment(joined + line).split())
            joined = ""
            if command:
                commands.append(Command(start, kind, command))
    return commands


def _drop_comment(line: str) -> str:
    """The command without its `# comment` (a whole-line comment leaves nothing). README's
    commands quote no `#`."""
    return re.sub(r"(^|\s)#.*$", "", line)


def entry_point(words: list[str]) -> str | None:
    for word in words[:3]:
        if word in ENTRY:
            return ENTRY[word]
    return None


def data_kind(words: list[str]) -> str:
    """ "synthetic" (the default), "voc" (data=voc, data=voc_aug or a preset that picks them), or
    "other" (another data= option: no data overrides, any checkpoint)."""
    option = "synthetic"
    for word in words:
        if word.startswith("data="):
            option = word.split("=", 1)[1]
        if word.startswith("experiment="):
            preset = REPO_ROOT / "conf" / "experiment" / f"{word.split('=', 1)[1]}.yaml"
            defaults = yaml.safe_load(preset.read_text()).get("defaults", [])
            picked = [d["override /data"] for d in defaults if "override /data" in d]
            option = picked[0] if picked else option
    return "voc" if option.startswith("voc") else option if option == "synthetic" else "other"


class Workspace:
    """The temporary directory the commands run in, and the files they stand for."""

    def __init__(self, root: Path, voc_mini: Path) -> None:
        self.root = root
        self.env = cli_env(root / "cache")
        self.voc = self._small_voc(voc_mini, root / "data_voc", num_train=4, num_val=2)
        val = (voc_mini / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
        photos = [voc_mini / "JPEGImages" / f"{i}.jpg" for i in val]
        for name, count in table.USER_FILES.items():
            if name.endswith(".jpg"):
                shutil.copy(photos[0], root / name)
            else:
                (root / name).mkdir()
                for photo in photos[:count]:
                    shutil.copy(photo, root / name / photo.name)
        self._models: dict[Path, tuple[float, dict]] = {}

    @staticmethod
    def _small_voc(source: Path, root: Path, num_train: int, num_val: int) -> Path:
        lists = root / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True)
        for folder in ("JPEGImages", "SegmentationClass"):
            (root / folder).mkdir()
        for split, count in (("train", num_train), ("val", num_val)):
            ids = (source / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
            (lists / f"{split}.txt").write_text("\n".join(ids[:count]) + "\n")
            for i in ids[:count]:
                shutil.copy(source / "JPEGImages" / f"{i}.jpg", root / "JPEGImages")
                shutil.copy(source / "SegmentationClass" / f"{i}.png", root / "SegmentationClass")
        return root

    def model(self, path: Path) -> dict:
        """A checkpoint's hyper-parameters (read again when the file changed)."""
        mtime = path.stat().st_mtime
        if path not in self._models or self._models[path][0] != mtime:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            self._models[path] = (mtime, ckpt["hyper_parameters"])
        return self._models[path][1]

    def checkpoint_for(self, words: list[str], entry: str | None) -> Path:
        """The newest last.ckpt of a model like the one the command names."""
        kind = data_kind(words)
        want = {"num_classes": CLASSES[kind]} if kind in CLASSES else {}
        if entry == "train":
            options = dict(w.split("=", 1) for w in words if "=" in w)
            want.update(backbone=options.get("backbone", "resnet18"))
            want.update(head=options.get("head", "fcn8s"))
        # Newest first; plain runs before sweep jobs, whose directory names hold `=` and `,`
        # (a Hydra override would need them quoted).
        found = sorted(
            self.root.glob("outputs/**/checkpoints/last.ckpt"),
            key=lambda p: ("multirun" not in p.parts, p.stat().st_mtime),
            reverse=True,
        )
        for path in found:
            model = self.model(path)
            if all(model.get(k) == v for k, v in want.items()):
                return path
        raise AssertionError(f"no last.ckpt written before for a model with {want}")


def prepared(command: Command, space: Workspace) -> str:
    """The shell line that runs `command` here: placeholders filled, tiny overrides appended."""
    text = re.sub(r"\s\[[^\]]*\s[^\]]*\]", "", command.text)  # optional parts left out
    for pattern, token in table.PLACEHOLDERS:
        text = re.sub(pattern, token, text)
    words = text.split()
    entry = entry_point(words)
    extra = []
    if entry and "--help" not in words:
        given = {w.split("=", 1)[0] for w in words if "=" in w}
        tiny = [*table.TINY_DATA[data_kind(words)], *table.TINY[entry]]
        if entry == "predict":
            tiny = []
        extra = [o for o in tiny if o.split("=", 1)[0] not in given]
    extra += table.EXTRA.get(command.text, ([], ""))[0]
    line = " ".join([text, *(shlex.quote(o) for o in extra)])
    if "{ckpt}" in line or "{run}" in line:
        ckpt = space.checkpoint_for(words, entry)
        line = line.replace("{ckpt}", str(ckpt)).replace("{run}", str(ckpt.parent.parent))
    return line.replace("{voc}", str(space.voc))


@pytest.fixture(scope="module")
def commands() -> list[Command]:
    return readme_commands(README.read_text())


def test_readme_commands_are_found_and_the_table_names_only_real_ones(commands):
    texts = {c.key for c in commands}
    assert sum(c.kind == "bash" for c in commands) >= 40
    stale = [k for k in [*table.SKIP, *table.EXTRA, *table.PYTHON_SKIP] if k not in texts]
    assert not stale, f"tests/readme_commands.py names commands README.md no longer has: {stale}"


@pytest.mark.slow
def test_readme_commands_run_as_printed(commands, voc_mini, tmp_path):
    space = Workspace(tmp_path, voc_mini)
    log, failures = [], []
    started = time.perf_counter()
    for number, command in enumerate(commands, 1):
        head = f"{number:2d} README.md:{command.line}  {command.key}"
        if command.key in table.SKIP or command.key in table.PYTHON_SKIP:
            reason = table.SKIP.get(command.key) or table.PYTHON_SKIP[command.key]
            log.append(f"{head}\n     skipped: {reason}")
            continue
        t0 = time.perf_counter()
        if command.kind == "python":
            script = tmp_path / f"readme_block_{command.line}.py"
            script.write_text(command.text + "\n")
            argv, shown = ["python", script.name], f"python {script.name}"
        else:
            shown = prepared(command, space)
            argv = ["bash", "-c", shown]
        result = run(argv, tmp_path, space.env, timeout=600, check=False)
        seconds = time.perf_counter() - t0
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        log.append(f"{head}\n     ran: {shown}\n     {status} in {seconds:.1f} s")
        warnings = warning_lines(result)  # README: "Runs print no Python warnings"
        log += [f"     warning line: {line}" for line in warnings]
        if warnings and result.returncode == 0:
            failures.append(f"README.md:{command.line}: `{shown}` printed:\n" + "\n".join(warnings))
        if result.returncode != 0:
            failures.append(
                f"README.md:{command.line}: `{command.key}` failed as `{shown}`:\n"
                f"{result.stdout[-1500:]}\n{result.stderr[-2500:]}"
            )
    log.append(f"total {time.perf_counter() - started:.0f} s")
    report = "\n".join(log)
    (tmp_path / "readme_commands.log").write_text(report + "\n")
    print(report)
    assert not failures, (
        "\n\n".join(failures) + "\n\nA command that cannot run on a CPU in a minute belongs in "
        "SKIP in tests/readme_commands.py, with the reason; a different budget in EXTRA."
    )
