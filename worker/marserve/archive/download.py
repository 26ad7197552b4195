"""Fetching remote archives (`http(s)://`, `s3://`) to a local file, bounded and retried.

The body streams to disk while its sha256 is computed, so a digest check costs no second read.
Connection errors and 5xx answers are retried with exponential back-off; other HTTP errors are
final. URLs in messages lose their query string and user info: they may carry signatures.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from marserve.archive import s3
from marserve.archive.errors import ArchiveError
from marserve.archive.limits import DownloadOptions, ExtractLimits, format_size
from marserve.archive.progress import Progress, Report
from marserve.contract import EXTRACT_ENV

REMOTE_SCHEMES = ("http://", "https://", "s3://")
CHUNK_BYTES = 1024 * 1024
MAX_BACKOFF_S = 30.0
_RETRYABLE_STATUS = {408, 429}
_TRANSIENT_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class _TransientError(Exception):
    """A failure worth another attempt."""


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_SCHEMES)


def display_url(url: str) -> str:
    """The URL without user info or query: safe to print and to put in a pod's status."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


@dataclass
class _Transfer:
    """What arrived so far; kept across attempts so that a retry resumes instead of restarting."""

    url: str
    target: Path
    received: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def restart(self) -> None:
        self.received = 0
        self.digest = hashlib.sha256()
        self.target.write_bytes(b"")


def download(
    url: str,
    target: Path,
    *,
    limits: ExtractLimits,
    options: DownloadOptions,
    report: Report | None = None,
) -> str:
    """Downloads `url` into `target` and returns the body's sha256 (hex).

    A retry after a dropped connection asks for the missing bytes only (HTTP Range); servers
    that ignore the range simply send everything again.
    """
    shown = display_url(url)
    transfer = _Transfer(url, target)
    transfer.restart()
    last_error = ""
    for attempt in range(options.attempts):
        if attempt:
            time.sleep(min(options.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            if report:
                report(f"retrying download of {shown} ({last_error})")
        try:
            return _attempt(transfer, limits=limits, options=options, report=report)
        except _TransientError as error:
            last_error = str(error)
    raise ArchiveError(
        f"download of {shown} failed after {options.attempts} attempts: {last_error}"
    )


def _attempt(
    transfer: _Transfer,
    *,
    limits: ExtractLimits,
    options: DownloadOptions,
    report: Report | None,
) -> str:
    shown = display_url(transfer.url)
    wanted = {"Range": f"bytes={transfer.received}-"} if transfer.received else {}
    request = _request(transfer.url, wanted)
    try:
        with urllib.request.urlopen(request, timeout=options.timeout_s) as response:
            if transfer.received and not _resumes(response, transfer.received):
                transfer.restart()
            declared = response.headers.get("Content-Length")
            length = int(declared) if declared and declared.isdigit() else None
            total = None if length is None else transfer.received + length
            if total is not None and total > limits.max_archive_bytes:
                raise _too_big(shown, limits, total)
            progress = Progress(f"downloading {shown}", total, report, done=transfer.received)
            with transfer.target.open("ab") as out:
                while chunk := response.read(CHUNK_BYTES):
                    if transfer.received + len(chunk) > limits.max_archive_bytes:
                        raise _too_big(shown, limits, transfer.received + len(chunk))
                    out.write(chunk)
                    transfer.received += len(chunk)
                    transfer.digest.update(chunk)
                    progress.add(len(chunk))
            if total is not None and transfer.received != total:
                raise _TransientError(
                    f"connection closed after {transfer.received} of {total} bytes"
                )
            return transfer.digest.hexdigest()
    except urllib.error.HTTPError as error:
        if error.code == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and transfer.received:
            transfer.restart()
            raise _TransientError("the server refused to resume; starting over") from error
        if error.code >= 500 or error.code in _RETRYABLE_STATUS:
            raise _TransientError(f"HTTP {error.code} {error.reason}") from error
        raise ArchiveError(
            f"download of {shown} failed: HTTP {error.code} {error.reason}"
        ) from error
    except _TRANSIENT_ERRORS as error:
        reason = getattr(error, "reason", None) or error
        raise _TransientError(f"{type(error).__name__}: {reason}") from error


def _resumes(response: Any, offset: int) -> bool:
    """Whether the server sent exactly the bytes from `offset` on (206 with a matching range)."""
    content_range = response.headers.get("Content-Range", "")
    return bool(
        response.status == HTTPStatus.PARTIAL_CONTENT
        and content_range.startswith(f"bytes {offset}-")
    )


def _request(url: str, headers: Mapping[str, str]) -> urllib.request.Request:
    if url.startswith("s3://"):
        settings = s3.S3Settings.from_env(os.environ)
        https_url = s3.object_url(url, settings)
        signed = s3.signed_get_headers(https_url, settings, now=datetime.now(UTC), extra=headers)
        return urllib.request.Request(https_url, headers=signed)
    authorization = os.environ.get(EXTRACT_ENV.archive_authorization)
    credentials = {"Authorization": authorization} if authorization else {}
    return urllib.request.Request(
        url, headers={"User-Agent": "marserve-extract", **credentials, **headers}
    )


def _too_big(shown: str, limits: ExtractLimits, size: int) -> ArchiveError:
    return ArchiveError(
        f"download of {shown} is larger than the limit of "
        f"{format_size(limits.max_archive_bytes)} (got {format_size(size)}; --max-archive-size)"
    )
