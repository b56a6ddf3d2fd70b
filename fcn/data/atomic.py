"""Files and folders that appear whole or not at all: private temp names, renamed into place.

A temp name carries its writer's process id, so a later run can tell the leftovers of a
killed run (writer gone: removed) from the work of a run still going (writer alive: kept).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_TEMP_MARK = ".tmp-"


def temp_path(final: Path, tag: str = "") -> Path:
    """A hidden sibling of `final` owned by this process (same folder, so rename is atomic)."""
    return final.with_name(f".{final.name}{tag}{_TEMP_MARK}{os.getpid()}")


def _writer_alive(path: Path) -> bool:
    try:
        pid = int(path.name.rsplit(_TEMP_MARK, 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete the temp files and folders in `folder` whose writer has exited; return how many."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob(f".*{_TEMP_MARK}*"):
        if _writer_alive(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file: readers see the old or the new file, whole."""
    tmp = temp_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
