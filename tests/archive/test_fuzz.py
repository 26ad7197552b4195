"""Damaged archives end in a clean ArchiveError or a good model, never in anything else."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marserve.archive import ArchiveError, ExtractLimits, extract_archive
from marserve.manifest import MANIFEST_PATH

MANIFEST = b'{"model": {"modelName": "m", "handler": "h.py"}}'
FILES = {MANIFEST_PATH: MANIFEST, "h.py": b"def handle(data, context):\n    return data\n"}
LIMITS = ExtractLimits(max_archive_bytes=1 << 20, max_unpacked_bytes=1 << 20, max_entries=50)


def _zip_bytes(compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in FILES.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tgz_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in FILES.items():
            info = tarfile.TarInfo(f"m/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ORIGINALS = [_zip_bytes(zipfile.ZIP_DEFLATED), _zip_bytes(zipfile.ZIP_STORED), _tgz_bytes()]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ORIGINALS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
            if not data:
                break
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_archive_fails_cleanly_or_extracts(data: bytes) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        archive = workdir / "model.mar"
        archive.write_bytes(data)
        dest = workdir / "out" / "models"
        try:
            extract_archive(archive, dest, limits=LIMITS)
        except ArchiveError as error:
            assert "\n" not in str(error)
            assert not dest.exists()
        else:
            assert (dest / MANIFEST_PATH).is_file()
        assert sorted(path.name for path in workdir.iterdir()) == ["model.mar", "out"]
        assert [path.name for path in (workdir / "out").iterdir()] in ([], ["models"])
    finally:
        shutil.rmtree(workdir)
