"""Downloading one large file over HTTP(S): a `.part` file resumed with Range, a progress bar.

The bytes are saved exactly as the server stores them (no transparent gzip decoding: a
`.tgz` served with `Content-Encoding: gzip` would otherwise land decompressed and fail its
checksum), so the caller can verify them against a published digest.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

CHUNK_BYTES = 1 << 20
# (connect, read) seconds: a stalled mirror is given up on and the download resumed.
TIMEOUT_S = (20, 60)
_HEADERS = {
    "User-Agent": f"fcn-data python-requests/{requests.__version__}",
    "Accept-Encoding": "identity",
}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
# What a dropped or stalled connection raises: requests' own errors, and urllib3's when the
# body is read raw (an IncompleteRead when the server closes before Content-Length bytes).
_TRANSFER_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError)


class DownloadFailed(Exception):
    """A URL could not be fetched (HTTP error, refused, or dropped more often than allowed)."""


def fetch_once(url: str, part: Path, label: str | None = None) -> None:
    """One request for `url`, appended to `part` from its current size (HTTP Range).

    Returns when the server has sent everything it announced; raises a transfer error when the
    connection drops, leaving `part` holding every byte received so far.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = dict(_HEADERS)
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
        if response.status_code == 416 and offset:
            return  # nothing past our end: `part` already holds the whole file
        response.raise_for_status()
        if offset and response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != offset:
                raise DownloadFailed(
                    f"{url} answered a request for bytes {offset}- with "
                    f"{response.headers.get('Content-Range')!r}"
                )
        elif offset:
            offset = 0  # the server ignored Range and sends the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label or part.name.removesuffix(".part"),
                file=sys.stderr,
            ) as bar,
        ):
            for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                out.write(chunk)
                bar.update(len(chunk))


def download(url: str, part: Path, retries: int = 3, label: str | None = None) -> None:
    """Fetch `url` into `part`, resuming after every dropped connection.

    Gives up (DownloadFailed) after `retries` attempts in a row that added no byte, so a slow
    but moving transfer of a large archive is never abandoned. `part` is kept either way.
    """
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            fetch_once(url, part, label)
            return
        except requests.HTTPError as err:  # 404, 403, 5xx: this mirror will not serve it
            raise DownloadFailed(f"{url}: {err}") from None
        except _TRANSFER_ERRORS as err:
            now = part.stat().st_size if part.exists() else 0
            failures = 0 if now > before else failures + 1
            if failures > retries:
                raise DownloadFailed(f"{url}: {_reason(err)}") from None
            print(
                f"download of {url} interrupted ({_reason(err)}); resuming from byte {now}",
                file=sys.stderr,
            )
            time.sleep(min(2.0**failures, 30.0) if failures else 0.0)


def _reason(err: BaseException) -> str:
    # urllib3 wraps its message and cause in a tuple: show the message only.
    first = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
    text = first.strip()
    return text.splitlines()[-1] if text else type(err).__name__
