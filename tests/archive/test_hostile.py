"""Hostile and broken archives: each is refused with exit 2, one line, and nothing left behind."""

from __future__ import annotations

import io
import json
import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marserve.contract import EXTRACT_ENV
from marserve.manifest import MANIFEST_PATH

MANIFEST = json.dumps({"runtime": "python", "model": {"modelName": "m", "handler": "h.py"}})
ZEROS = bytes(4 * 1024 * 1024)


def _zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def _tgz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _valid_zip(_: Path) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [(MANIFEST_PATH, MANIFEST.encode()), ("h.py", b"")]


def _valid_tar() -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(_member(MANIFEST_PATH), MANIFEST.encode()), (_member("h.py"), b"")]


def _size_lie(tmp: Path) -> Path:
    """A zip whose headers declare 1000 bytes for an entry that inflates to 4 MiB."""
    path = _zip(tmp / "lie.mar", [*_valid_zip(tmp), ("weights.bin", ZEROS)])
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("weights.bin")
    struct.pack_into("<I", data, info.header_offset + 22, 1000)
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len("weights.bin")] != b"weights.bin":
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, 1000)
    path.write_bytes(bytes(data))
    return path


def _declared_count_bomb(tmp: Path, *, zip64: bool) -> Path:
    """A small zip whose end record claims a huge entry count (zip64 when asked)."""
    path = tmp / "count.mar"
    limit = zipfile.ZIP_FILECOUNT_LIMIT
    try:
        if zip64:  # the writer switches to zip64 records above this count
            zipfile.ZIP_FILECOUNT_LIMIT = 1
        _zip(path, _valid_zip(tmp))
    finally:
        zipfile.ZIP_FILECOUNT_LIMIT = limit
    data = bytearray(path.read_bytes())
    if zip64:
        record = data.rindex(b"PK\x06\x06")
        struct.pack_into("<QQ", data, record + 24, 10**9, 10**9)
    else:
        struct.pack_into("<HH", data, data.rindex(b"PK\x05\x06") + 8, 60000, 60000)
    path.write_bytes(bytes(data))
    return path


def _damaged_weights(real: Path, tmp: Path) -> Path:
    """The real MAR with bytes in the middle of the deflated weights overwritten."""
    data = bytearray(real.read_bytes())
    with zipfile.ZipFile(real) as archive:
        info = archive.getinfo("model.pth")
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
    data[start : start + 64] = bytes(64)
    path = tmp / "damaged.mar"
    path.write_bytes(bytes(data))
    return path


def _encrypted(real: Path, tmp: Path) -> Path:
    """The real MAR with its weights marked encrypted (general purpose flag bit 0) in both the
    local header and the central directory, as a password-protected zip stores them."""
    data = bytearray(real.read_bytes())
    with zipfile.ZipFile(real) as archive:
        info = archive.getinfo("model.pth")
    name = info.filename.encode()
    central = data.index(b"PK\x01\x02", data.rindex(b"PK\x05\x06") - 46 * 64)
    while data[central + 46 : central + 46 + len(name)] != name:
        central = data.index(b"PK\x01\x02", central + 4)
    for flags_at in (info.header_offset + 6, central + 8):
        struct.pack_into("<H", data, flags_at, info.flag_bits | 0x1)
    path = tmp / "encrypted.mar"
    path.write_bytes(bytes(data))
    return path


def _directory_with_link(tmp: Path, target: str) -> Path:
    """A no-archive model directory holding a symlink that leads out of it."""
    source = tmp / "model-dir"
    (source / "MAR-INF").mkdir(parents=True)
    (source / MANIFEST_PATH).write_text(MANIFEST)
    (source / "evil").symlink_to(target)
    return source


def _cut(source: Path, tmp: Path, fraction: float) -> Path:
    path = tmp / f"cut-{source.name}"
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, dict[str, Path]], Path]
    expect: str
    flags: tuple[str, ...] = ()
    subprocess_run: bool = False


CASES = [
    Case(
        "zip ../ entry",
        lambda t, r: _zip(t / "a.mar", [*_valid_zip(t), ("../evil.py", b"x")]),
        "points outside the destination ('..')",
        subprocess_run=True,
    ),
    Case(
        "zip nested ../ entry",
        lambda t, r: _zip(t / "a.mar", [*_valid_zip(t), ("sub/../../evil.py", b"x")]),
        "points outside the destination ('..')",
    ),
    Case(
        "zip absolute path",
        lambda t, r: _zip(t / "a.mar", [*_valid_zip(t), (str(t / "evil.py"), b"x")]),
        "has an absolute path",
    ),
    Case(
        "tgz absolute path",
        lambda t, r: _tgz(t / "a.tgz", [*_valid_tar(), (_member(str(t / "evil.py")), b"x")]),
        "has an absolute path",
    ),
    Case(
        "tgz ../ entry",
        lambda t, r: _tgz(t / "a.tgz", [*_valid_tar(), (_member("../evil.py"), b"x")]),
        "points outside the destination ('..')",
    ),
    Case(
        "tgz symlink out of DEST",
        lambda t, r: _tgz(
            t / "a.tgz", [*_valid_tar(), (_member("evil", tarfile.SYMTYPE, "../.."), b"")]
        ),
        "'evil' points outside the destination",
        subprocess_run=True,
    ),
    Case(
        "tgz symlink to an absolute path",
        lambda t, r: _tgz(
            t / "a.tgz", [(_member("evil", tarfile.SYMTYPE, "/etc/passwd"), b""), *_valid_tar()]
        ),
        "is a symlink to an absolute path",
    ),
    Case(
        "tgz symlink chain out of DEST",
        lambda t, r: _tgz(
            t / "a.tgz",
            [
                *_valid_tar(),
                (_member("here", tarfile.SYMTYPE, "."), b""),
                (_member("here/evil", tarfile.SYMTYPE, ".."), b""),
            ],
        ),
        "'here/evil' points outside the destination",
    ),
    Case(
        "zip symlink out of DEST",
        lambda t, r: _zip(t / "a.mar", [*_valid_zip(t), (_zip_symlink("evil"), b"../../etc")]),
        "'evil' points outside the destination",
    ),
    Case(
        "directory with a symlink out",
        lambda t, r: _directory_with_link(t, "../../outside"),
        "'evil' points outside the destination",
    ),
    Case(
        "directory with an absolute symlink",
        lambda t, r: _directory_with_link(t, "/etc/passwd"),
        "is a symlink to an absolute path",
    ),
    Case(
        "tgz hard link out of DEST",
        lambda t, r: _tgz(
            t / "a.tgz", [*_valid_tar(), (_member("evil", tarfile.LNKTYPE, "../../x"), b"")]
        ),
        "points outside the destination ('..')",
    ),
    Case(
        "tgz device file",
        lambda t, r: _tgz(t / "a.tgz", [*_valid_tar(), (_member("evil", tarfile.CHRTYPE), b"")]),
        "is a device or special file",
    ),
    Case(
        "zip bomb by declared size",
        lambda t, r: _zip(t / "bomb.mar", [*_valid_zip(t), ("weights.bin", ZEROS)]),
        "archive declares 4.0 MiB unpacked, over the limit of 1.0 MiB (--max-unpacked-size)",
        flags=("--max-unpacked-size", "1MiB"),
        subprocess_run=True,
    ),
    Case(
        "zip bomb lying about its size",
        lambda t, r: _size_lie(t),
        "lie.mar is corrupt or truncated: Bad CRC-32 for file 'weights.bin'",
        flags=("--max-unpacked-size", "1MiB"),
    ),
    Case(
        "tgz bomb",
        lambda t, r: _tgz(t / "bomb.tgz", [*_valid_tar(), (_member("weights.bin"), ZEROS)]),
        "archive unpacks to more than 1.0 MiB (at entry 'weights.bin'; --max-unpacked-size)",
        flags=("--max-unpacked-size", "1MiB"),
    ),
    Case(
        "zip with too many entries",
        lambda t, r: _zip(t / "many.mar", [*_valid_zip(t), *((f"f{i}", b"") for i in range(20))]),
        "archive holds 22 entries, over the limit of 10 (--max-entries)",
        flags=("--max-entries", "10"),
    ),
    Case(
        "zip end record declaring too many entries",
        lambda t, r: _declared_count_bomb(t, zip64=False),
        "archive holds 60000 entries, over the limit of 1000 (--max-entries)",
        flags=("--max-entries", "1000"),
    ),
    Case(
        "zip64 end record declaring too many entries",
        lambda t, r: _declared_count_bomb(t, zip64=True),
        "archive holds 1000000000 entries, over the limit of 100000 (--max-entries)",
    ),
    Case(
        "tgz with too many entries",
        lambda t, r: _tgz(
            t / "many.tgz", [*((_member(f"f{i}"), b"") for i in range(20)), *_valid_tar()]
        ),
        "archive holds more than 10 entries (--max-entries)",
        flags=("--max-entries", "10"),
    ),
    Case(
        "truncated zip",
        lambda t, r: _cut(r["default"], t, 0.6),
        "is corrupt or truncated: File is not a zip file",
        subprocess_run=True,
    ),
    Case(
        "zip with damaged deflate data",
        lambda t, r: _damaged_weights(r["default"], t),
        "damaged.mar is corrupt or truncated",
    ),
    Case(
        "zip with an encrypted entry",
        lambda t, r: _encrypted(r["default"], t),
        "entry 'model.pth' is encrypted; model archives are never encrypted",
    ),
    Case(
        "truncated tgz",
        lambda t, r: _cut(r["tgz"], t, 0.6),
        "is corrupt or truncated: Compressed file ended before the end-of-stream marker",
    ),
    Case(
        "gzip of garbage",
        lambda t, r: _write(t / "junk.tar.gz", b"\x1f\x8b" + bytes(range(256)) * 4),
        "junk.tar.gz is corrupt or truncated",
    ),
    Case(
        "not an archive",
        lambda t, r: _write(t / "model.mar", b"just some text"),
        "model.mar is not a model archive: expected a zip (.mar), a .tar.gz or a directory",
    ),
    Case(
        "missing MANIFEST.json",
        lambda t, r: _zip(t / "a.mar", [("h.py", b"")]),
        "a.mar has no MAR-INF/MANIFEST.json; it is not a model archive",
    ),
    Case(
        "manifest is not JSON",
        lambda t, r: _zip(t / "a.mar", [(MANIFEST_PATH, b"{not json"), ("h.py", b"")]),
        "a.mar: MAR-INF/MANIFEST.json is not valid JSON",
    ),
    Case(
        "manifest without a handler",
        lambda t, r: _zip(t / "a.mar", [(MANIFEST_PATH, b'{"model": {"modelName": "m"}}')]),
        "a.mar: MAR-INF/MANIFEST.json has no model.handler",
    ),
    Case(
        "manifest names a handler file the archive lacks",
        lambda t, r: _zip(t / "a.mar", [(MANIFEST_PATH, MANIFEST.encode())]),
        "a.mar: MAR-INF/MANIFEST.json names model.handler 'h.py', which is not in the archive",
    ),
    Case(
        "manifest names weights the archive lacks",
        lambda t, r: _zip(
            t / "a.mar",
            [
                (
                    MANIFEST_PATH,
                    b'{"model": {"modelName": "m", "handler": "x:fn", '
                    b'"serializedFile": "model.pt"}}',
                ),
            ],
        ),
        "names model.serializedFile 'model.pt', which is not in the archive",
    ),
    Case(
        "digest mismatch",
        lambda t, r: r["default"],
        "sha256 of ",
        flags=("--sha256", "0" * 64),
        subprocess_run=True,
    ),
    Case(
        "malformed digest",
        lambda t, r: r["default"],
        "--sha256 must be 64 hex digits, got 'abc'",
        flags=("--sha256", "abc"),
    ),
    Case(
        "archive over the size limit",
        lambda t, r: r["default"],
        "over the limit of 1.0 KiB (--max-archive-size)",
        flags=("--max-archive-size", "1KiB"),
    ),
    Case(
        "missing archive",
        lambda t, r: t / "nowhere.mar",
        "nowhere.mar does not exist",
    ),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("dest_kind", ["new", "empty-mount"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_archive_is_refused_cleanly(
    case: Case,
    dest_kind: str,
    real_mars: dict[str, Path],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    tmp_path: Path,
) -> None:
    archive = case.build(tmp_path, real_mars)
    dest = tmp_path / "pod" / "models"
    if dest_kind == "empty-mount":
        dest.mkdir(parents=True)
    in_subprocess = case.subprocess_run and dest_kind == "new"
    outcome = marserve("extract", archive, dest, *case.flags, subprocess_run=in_subprocess)
    clean_failure(outcome, dest, expect=case.expect)
    leftovers = [path for path in tmp_path.rglob("evil*") if archive not in (path, path.parent)]
    assert not leftovers


def test_non_empty_destination_is_left_alone(
    real_mars: dict[str, Path],
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    outcome = marserve("extract", real_mars["default"], dest)
    assert outcome.code == 2
    assert outcome.stderr_lines == [
        f"marserve extract: {dest} is not empty (use --force to replace what it holds)"
    ]
    assert [path.name for path in dest.iterdir()] == ["keep.txt"]


def test_a_failed_forced_extract_keeps_the_previous_model(
    real_mars: dict[str, Path],
    marserve: Callable[..., Any],
    read_tree: Callable[[Path], dict[str, bytes]],
    tmp_path: Path,
) -> None:
    dest = tmp_path / "models"
    assert marserve("extract", real_mars["default"], dest).code == 0
    before = read_tree(dest)
    broken = _zip(tmp_path / "broken.mar", [("h.py", b"")])
    outcome = marserve("extract", broken, dest, "--force")
    assert outcome.code == 2
    assert read_tree(dest) == before


def test_without_a_termination_log_only_stderr_gets_the_line(
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    missing_log = tmp_path / "no-such-dir" / "termination-log"
    monkeypatch.setenv(EXTRACT_ENV.termination_log, str(missing_log))
    outcome = marserve("extract", tmp_path / "nowhere.mar", tmp_path / "dest")
    assert outcome.code == 2
    assert len(outcome.stderr_lines) == 1
    assert not missing_log.parent.exists()
