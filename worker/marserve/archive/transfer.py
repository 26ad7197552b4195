"""One bounded, resumable, retried copy of a remote object into a local file.

Every store (plain HTTP, S3, Google Cloud Storage, Azure Blob) only opens the object from an
offset and pushes its bytes into a `Sink`. What must behave the same for all of them lives here:
the size limit, the sha256 computed while writing (so a digest check costs no second read),
progress lines, resuming after a dropped connection and which failures earn another attempt.
The stores' client libraries are told not to retry, so attempts are counted once, here.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

from marserve.archive.errors import ArchiveError
from marserve.archive.limits import DownloadOptions, ExtractLimits, format_size
from marserve.archive.progress import Progress, Report

CHUNK_BYTES = 1024 * 1024
MAX_BACKOFF_S = 30.0
_RETRYABLE_STATUS = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})


class TransientError(Exception):
    """A failure worth another attempt: a dropped connection, a timeout, a truncated body."""


class StatusError(Exception):
    """The store answered with an HTTP error status; `reason` is its error code or phrase."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class Source(Protocol):
    """A remote object: `fetch` opens it at `offset` and writes what arrives into `sink`."""

    def fetch(self, sink: Sink, *, offset: int, timeout_s: float) -> None: ...


@dataclass
class Sink:
    """The local copy so far, kept across attempts so that a retry resumes, not restarts."""

    shown: str
    target: Path
    limits: ExtractLimits
    report: Report | None = None
    received: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def restart(self) -> None:
        self.received = 0
        self.digest = hashlib.sha256()
        self.target.write_bytes(b"")

    def receive(self, *, start: int, total: int | None) -> Receiver:
        """A writer for bytes from `start` on, of an object of `total` bytes (None: unknown).

        A store that ignored the requested range sends from 0, and the copy starts over.
        """
        if start != self.received:
            if start:
                raise TransientError(f"the store sent bytes from {start}, not {self.received}")
            self.restart()
        if total is not None and total > self.limits.max_archive_bytes:
            raise self.too_big(total)
        return Receiver(self, total)

    def too_big(self, size: int) -> ArchiveError:
        return ArchiveError(
            f"download of {self.shown} is larger than the limit of "
            f"{format_size(self.limits.max_archive_bytes)} "
            f"(got {format_size(size)}; --max-archive-size)"
        )


class Receiver:
    """A file-like writer that appends to the sink's file, bounded and digested; leaving its
    block checks that the whole declared object arrived."""

    def __init__(self, sink: Sink, total: int | None) -> None:
        self.sink = sink
        self.total = total
        self.progress = Progress(
            f"downloading {sink.shown}", total, sink.report, done=sink.received
        )
        self.out: BinaryIO = sink.target.open("ab")

    def write(self, chunk: bytes) -> int:
        sink = self.sink
        if sink.received + len(chunk) > sink.limits.max_archive_bytes:
            raise sink.too_big(sink.received + len(chunk))
        self.out.write(chunk)
        sink.received += len(chunk)
        sink.digest.update(chunk)
        self.progress.add(len(chunk))
        return len(chunk)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.out.close()
        if kind is None and self.total is not None and self.sink.received != self.total:
            raise TransientError(
                f"connection closed after {self.sink.received} of {self.total} bytes"
            )


def copy_to_file(
    source: Source,
    target: Path,
    *,
    shown: str,
    limits: ExtractLimits,
    options: DownloadOptions,
    report: Report | None = None,
) -> str:
    """Copies `source` into `target` and returns the body's sha256 (hex).

    Connection errors, truncated bodies, 5xx, 408 and 429 are retried with exponential back-off
    (a retry asks only for the missing bytes); other statuses are final.
    """
    sink = Sink(shown, target, limits, report)
    sink.restart()
    last_error = ""
    for attempt in range(options.attempts):
        if attempt:
            time.sleep(min(options.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            if report:
                report(f"retrying download of {shown} ({last_error})")
        try:
            source.fetch(sink, offset=sink.received, timeout_s=options.timeout_s)
            return sink.digest.hexdigest()
        except StatusError as error:
            if error.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and sink.received:
                sink.restart()
                last_error = "the store refused to resume; starting over"
            elif error.status >= 500 or error.status in _RETRYABLE_STATUS:
                last_error = str(error)
            else:
                raise ArchiveError(f"download of {shown} failed: {error}") from error
        except TransientError as error:
            last_error = str(error)
    raise ArchiveError(
        f"download of {shown} failed after {options.attempts} attempts: {last_error}"
    )
