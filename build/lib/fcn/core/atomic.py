"""Files and folders that appear whole or not at all: private temp names, renamed into place.

Every writer of a file a user keeps (checkpoints, exports, job records, data trees) goes
through here. A temp name carries its writer's process id, so a later run can tell the
leftovers of a killed run (writer gone: removed) from the work of a run still going (writer
alive: kept).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

_TEMP_MARK = ".tmp-"
_WRITER_PID = re.compile(re.escape(_TEMP_MARK) + r"(\d+)")


def temp_path(final: Path, keep_suffix: bool = False) -> Path:
    """A hidden sibling of `final` owned by this process (same folder, so rename is atomic):
    `.<name>.tmp-<pid>`, plus `final`'s suffix again with `keep_suffix` (for writers that pick
    a format by suffix; without it a `*.ckpt` glob never meets a half-written file)."""
    suffix = final.suffix if keep_suffix else ""
    return final.with_name(f".{final.name}{_TEMP_MARK}{os.getpid()}{suffix}")


def _writer_alive(path: Path) -> bool:
    found = _WRITER_PID.search(path.name)
    if found is None:
        return False
    pid = int(found.group(1))
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


@contextlib.contextmanager
def atomic_file(final: Path, durable: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `final` to write; when the block ends without error it is
    renamed over `final` (readers see the old file or the new one, whole), otherwise removed.

    `durable`: flush the data to disk before the rename, so that a crash of the machine, not
    only of the process, cannot leave `final` pointing at unwritten blocks (checkpoints).
    `keep_suffix`: see `temp_path`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final, keep_suffix)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file: readers see the old or the new file, whole."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
