"""Limit parsing, defaults and progress reporting."""

from __future__ import annotations

import pytest

from marserve.archive import ExtractLimits
from marserve.archive.limits import GIB, MIB, format_size, parse_size
from marserve.archive.progress import PROGRESS_STEP_BYTES, Progress


def test_defaults_fit_big_models_but_stop_bombs() -> None:
    limits = ExtractLimits()
    assert limits.max_unpacked_bytes == limits.max_archive_bytes == 20 * GIB
    assert limits.max_entries == 100_000


@pytest.mark.parametrize(
    ("text", "count"),
    [("1048576", MIB), ("512MiB", 512 * MIB), ("20GiB", 20 * GIB), ("1.5G", 3 * GIB // 2)],
)
def test_parse_size(text: str, count: int) -> None:
    assert parse_size(text) == count


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_format_size() -> None:
    assert [format_size(n) for n in (12, 1536, 5 * MIB, 3 * GIB)] == [
        "12 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_progress_every_tenth_of_a_known_total() -> None:
    lines: list[str] = []
    progress = Progress("unpacking m.mar", 100 * MIB, lines.append)
    for _ in range(400):
        progress.add(MIB // 4)
    assert len(lines) == 10
    assert lines[0] == "unpacking m.mar: 10% (10.0 MiB of 100.0 MiB)"
    assert lines[-1] == "unpacking m.mar: 100% (100.0 MiB of 100.0 MiB)"


def test_progress_by_bytes_without_a_total_and_silence_for_small_work() -> None:
    lines: list[str] = []
    unknown = Progress("downloading u", None, lines.append)
    unknown.add(PROGRESS_STEP_BYTES * 2 + 1)
    small = Progress("unpacking s", MIB, lines.append)
    small.add(MIB)
    assert lines == ["downloading u: 512.0 MiB"]
