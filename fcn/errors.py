"""User-facing errors: one line that names the file or config key and the fix."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class FCNError(Exception):
    """Bad input from the user (data, config, checkpoint): shown as one line, no traceback."""


class DataError(FCNError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class ConfigError(FCNError):
    """A config value is invalid; the message names the key."""


class CheckpointError(FCNError):
    """A checkpoint is missing or does not match the model."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn an FCNError into `error: <message>` on stderr and exit status 2, no traceback."""
    try:
        yield
    except FCNError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
