"""Writing archive entries under a root directory without letting any of them escape it.

Every entry is checked before anything is written: no absolute names, no `..`, no path through
a symlink that leaves the root, links only to targets inside, no device files. Declared totals
were checked when the archive was opened (see `containers`); here sizes are checked again against
the bytes actually written, because declared sizes can lie.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import IO

from marserve.archive.containers import Entry, EntryKind, Listing
from marserve.archive.errors import ArchiveError
from marserve.archive.limits import ExtractLimits, format_size
from marserve.archive.progress import Progress

CHUNK_BYTES = 1024 * 1024
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def write_entries(
    listing: Listing, root: Path, *, limits: ExtractLimits, progress: Progress
) -> None:
    """Unpacks every entry of `listing` under `root` (an empty directory) within `limits`."""
    writer = _RootWriter(root, limits, progress)
    for entry in listing.entries:
        writer.write(entry)


class _RootWriter:
    """Writes entries one by one, keeping the running totals that the limits apply to."""

    def __init__(self, root: Path, limits: ExtractLimits, progress: Progress) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.limits = limits
        self.progress = progress
        self.entries = 0
        self.written = 0

    def write(self, entry: Entry) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ArchiveError(
                f"archive holds more than {self.limits.max_entries} entries (--max-entries)"
            )
        relative = safe_relative_name(entry.name)
        if relative is None:
            return
        target = self.root / relative
        self._require_inside(os.path.realpath(target.parent), entry.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind is EntryKind.FILE:
            self._write_file(entry, target)
        elif entry.kind is EntryKind.DIRECTORY:
            target.mkdir(mode=0o755, exist_ok=True)
        elif entry.kind is EntryKind.SYMLINK:
            self._write_symlink(entry, target)
        elif entry.kind is EntryKind.HARDLINK:
            self._write_hardlink(entry, target)
        else:
            raise ArchiveError(f"entry {entry.name!r} is a device or special file")

    def _require_inside(self, real_path: str, name: str) -> None:
        if os.path.commonpath([self.real_root, real_path]) != self.real_root:
            raise ArchiveError(f"entry {name!r} points outside the destination")

    def _write_file(self, entry: Entry, target: Path) -> None:
        budget = self.limits.max_unpacked_bytes - self.written
        if entry.size > budget:
            self._over_limit(entry)
        assert entry.open is not None
        _remove_existing(target)
        mode = 0o755 if entry.mode & 0o111 else 0o644
        with entry.open() as source, os.fdopen(os.open(target, _NEW_FILE_FLAGS, mode), "wb") as out:
            self._copy(source, out, entry)

    def _copy(self, source: IO[bytes], out: IO[bytes], entry: Entry) -> None:
        copied = 0
        while chunk := source.read(CHUNK_BYTES):
            copied += len(chunk)
            self.written += len(chunk)
            if copied > entry.size:
                raise ArchiveError(f"entry {entry.name!r} holds more bytes than it declares")
            if self.written > self.limits.max_unpacked_bytes:
                self._over_limit(entry)
            out.write(chunk)
            self.progress.add(len(chunk))
        if copied < entry.size:
            raise ArchiveError(
                f"entry {entry.name!r} is truncated ({copied} of {entry.size} bytes)"
            )

    def _over_limit(self, entry: Entry) -> None:
        raise ArchiveError(
            f"archive unpacks to more than {format_size(self.limits.max_unpacked_bytes)} "
            f"(at entry {entry.name!r}; --max-unpacked-size)"
        )

    def _write_symlink(self, entry: Entry, target: Path) -> None:
        link = entry.link_target
        if not link or os.path.isabs(link):
            raise ArchiveError(f"entry {entry.name!r} is a symlink to an absolute path")
        self._require_inside(os.path.realpath(target.parent / link), entry.name)
        _remove_existing(target)
        os.symlink(link, target)

    def _write_hardlink(self, entry: Entry, target: Path) -> None:
        relative = safe_relative_name(entry.link_target)
        source = self.root / relative if relative else self.root
        self._require_inside(os.path.realpath(source), entry.name)
        if not source.is_file():
            raise ArchiveError(f"entry {entry.name!r} is a hard link to a missing file")
        _remove_existing(target)
        os.link(source, target)


def safe_relative_name(name: str) -> PurePosixPath | None:
    """The entry name as a path below the root; None for the root itself; refuses escapes."""
    if "\x00" in name:
        raise ArchiveError(f"entry {name!r} has a NUL byte in its name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ArchiveError(f"entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise ArchiveError(f"entry {name!r} points outside the destination ('..')")
    parts = [part for part in path.parts if part != "."]
    return PurePosixPath(*parts) if parts else None


def _remove_existing(target: Path) -> None:
    """Later entries replace earlier ones with the same name, as unzip does; never via a link."""
    if target.is_symlink() or target.is_file():
        target.unlink()
