"""Reading the archive formats as one stream of entries, whatever their container.

A MAR arrives as a zip (deflated or stored), a gzip'd tar, a plain tar or an unpacked
directory (`--archive-format no-archive`). The format is told by content, not by name, and each
reader yields the same `Entry` values so the safety checks live in one place.
"""

from __future__ import annotations

import enum
import gzip
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from marserve.archive.errors import ArchiveError
from marserve.archive.limits import ExtractLimits, format_size

#: Errors that mean the archive's bytes are damaged (truncated, bad checksum, bad header).
CORRUPT_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    zlib.error,
    gzip.BadGzipFile,
    EOFError,
    NotImplementedError,
)

#: General purpose flag bit 0: zipfile can only read such an entry with a password.
ZIP_ENCRYPTED_FLAG = 0x1

#: A symlink stored in a zip keeps its target as the entry's content; no real target is longer.
MAX_LINK_TARGET_BYTES = 4096

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"


class EntryKind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    SPECIAL = "special"


@dataclass(frozen=True)
class Entry:
    """One member: its name inside the archive, kind, declared size and how to read it."""

    name: str
    kind: EntryKind
    size: int = 0
    mode: int = 0o644
    link_target: str = ""
    open: Callable[[], IO[bytes]] | None = None


@dataclass(frozen=True)
class Listing:
    """An opened archive. Zips declare their totals up front; tars and directories do not."""

    declared_bytes: int | None
    declared_entries: int | None
    entries: Iterator[Entry]


def detect_format(path: Path) -> str:
    """`directory`, `zip`, `tgz` or `tar`, from the file's first bytes."""
    if path.is_dir():
        return "directory"
    with path.open("rb") as stream:
        head = stream.read(512)
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_GZIP_MAGIC):
        return "tgz"
    if head[257:262] == b"ustar":
        return "tar"
    raise ArchiveError(
        f"{path.name} is not a model archive: expected a zip (.mar), a .tar.gz or a directory"
    )


@contextmanager
def open_entries(path: Path, *, limits: ExtractLimits) -> Iterator[Listing]:
    """Opens `path` in the format its content shows and lists its entries lazily.

    A zip's declared entry count and unpacked size are checked against `limits` here, the count
    before the central directory is even parsed (parsing millions of entries exhausts memory).
    """
    kind = detect_format(path)
    if kind == "directory":
        yield Listing(None, None, _directory_entries(path))
    elif kind == "zip":
        _check_declared_entries(_zip_end_record_entries(path), limits)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_declared_entries(len(infos), limits)
            total = sum(info.file_size for info in infos)
            if total > limits.max_unpacked_bytes:
                raise ArchiveError(
                    f"archive declares {format_size(total)} unpacked, over the limit "
                    f"of {format_size(limits.max_unpacked_bytes)} (--max-unpacked-size)"
                )
            yield Listing(total, len(infos), _zip_entries(archive, infos))
    else:
        # Not stream mode ("r|*"): it takes a truncated gzip for a clean end of the archive.
        with tarfile.open(path, "r:*") as archive:
            yield Listing(None, None, _tar_entries(archive))


def _check_declared_entries(count: int | None, limits: ExtractLimits) -> None:
    if count is not None and count > limits.max_entries:
        raise ArchiveError(
            f"archive holds {count} entries, over the limit of {limits.max_entries} (--max-entries)"
        )


def _zip_end_record_entries(path: Path) -> int | None:
    """The entry count a zip's end-of-central-directory record (or its zip64 twin) declares."""
    with path.open("rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        tail_start = max(0, size - _EOCD_SIZE - 0xFFFF)
        stream.seek(tail_start)
        tail = stream.read()
        end = tail.rfind(_EOCD_SIGNATURE)
        if end < 0 or len(tail) < end + _EOCD_SIZE:
            return None
        count: int = struct.unpack_from("<H", tail, end + 10)[0]
        locator = end - _ZIP64_LOCATOR_SIZE
        if locator < 0 or tail[locator : locator + 4] != _ZIP64_LOCATOR:
            return count
        stream.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
        record = stream.read(40)
    if len(record) < 40 or not record.startswith(_ZIP64_EOCD_SIGNATURE):
        return None
    zip64_count: int = struct.unpack_from("<Q", record, 32)[0]
    return zip64_count


def _zip_entries(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> Iterator[Entry]:
    for info in infos:
        if info.flag_bits & ZIP_ENCRYPTED_FLAG:
            raise ArchiveError(
                f"entry {info.filename!r} is encrypted; model archives are never encrypted"
            )
        mode = info.external_attr >> 16
        opener = _zip_opener(archive, info)
        if info.is_dir() or stat.S_ISDIR(mode):
            yield Entry(info.filename, EntryKind.DIRECTORY)
        elif stat.S_ISLNK(mode):
            with opener() as stream:
                target = stream.read(MAX_LINK_TARGET_BYTES + 1)
            if len(target) > MAX_LINK_TARGET_BYTES:
                raise ArchiveError(f"entry {info.filename!r} is a symlink with an oversized target")
            yield Entry(
                info.filename, EntryKind.SYMLINK, link_target=target.decode(errors="replace")
            )
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            yield Entry(info.filename, EntryKind.SPECIAL)
        else:
            yield Entry(info.filename, EntryKind.FILE, info.file_size, mode & 0o777, open=opener)


def _zip_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: archive.open(info)


def _tar_entries(archive: tarfile.TarFile) -> Iterator[Entry]:
    for member in archive:
        if member.isreg():
            yield Entry(
                member.name,
                EntryKind.FILE,
                member.size,
                member.mode,
                open=_tar_opener(archive, member),
            )
        elif member.isdir():
            yield Entry(member.name, EntryKind.DIRECTORY)
        elif member.issym():
            yield Entry(member.name, EntryKind.SYMLINK, link_target=member.linkname)
        elif member.islnk():
            yield Entry(member.name, EntryKind.HARDLINK, link_target=member.linkname)
        else:
            yield Entry(member.name, EntryKind.SPECIAL)


def _tar_opener(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        stream = archive.extractfile(member)
        if stream is None:
            raise ArchiveError(f"entry {member.name!r} has no readable content")
        return stream

    return opener


def _directory_entries(root: Path) -> Iterator[Entry]:
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files) + [d for d in subfolders if Path(folder, d).is_symlink()]:
            path = Path(folder, name)
            yield _directory_entry(path, path.relative_to(root).as_posix())
        subfolders[:] = [d for d in subfolders if not Path(folder, d).is_symlink()]
        for name in subfolders:
            yield Entry(Path(folder, name).relative_to(root).as_posix(), EntryKind.DIRECTORY)


def _directory_entry(path: Path, name: str) -> Entry:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return Entry(name, EntryKind.SYMLINK, link_target=os.readlink(path))
    if stat.S_ISREG(info.st_mode):
        return Entry(
            name, EntryKind.FILE, info.st_size, info.st_mode & 0o777, open=_file_opener(path)
        )
    return Entry(name, EntryKind.SPECIAL)


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")
