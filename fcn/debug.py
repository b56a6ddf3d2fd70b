"""The `debug=` presets' announcement: one line, at the start, of what the preset set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.fabric.utilities.rank_zero import rank_zero_only


class DebugPresetNote(L.Callback):
    """Prints `debug=<preset>: key=value, ...` once, when the Trainer first sets up.

    `changes` maps each key the preset sets to its value in this run (the preset file passes
    interpolations, so a later command-line override shows as what really runs).
    """

    def __init__(self, preset: str, changes: Mapping[str, Any]) -> None:
        self.preset = preset
        self.changes = dict(changes)
        self._said = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._said:
            self._said = True
            rank_zero_only(print)(self.line(), flush=True)

    def line(self) -> str:
        settings = ", ".join(f"{k}={_show(v)}" for k, v in self.changes.items())
        return f"debug={self.preset}: {settings}"


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, Mapping) and "_target_" in value:
        return str(value["_target_"]).rsplit(".", 1)[-1]
    return str(value)
