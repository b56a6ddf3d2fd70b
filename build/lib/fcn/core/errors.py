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


class DivergenceError(FCNError):
    """Training diverged (a loss or weights that are not finite): stop, keep what was saved."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn an FCNError into `error: <message>` on stderr and exit status 2, no traceback."""
    try:
        yield
    except Exception as err:
        user_error = _user_error_in_chain(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def _user_error_in_chain(err: BaseException | None) -> FCNError | None:
    """The FCNError behind `err`, also when Hydra's instantiate wrapped it in its own error."""
    while err is not None:
        if isinstance(err, FCNError):
            return err
        err = err.__cause__
    return None
