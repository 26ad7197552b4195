"""`marserve extract` unpacks every archive format, detected by content, into place."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marserve.archive import ArchiveError, ExtractLimits, extract_archive
from marserve.archive.extract import STAGING_PREFIX
from marserve.manifest import MANIFEST_PATH, read_manifest


@pytest.mark.parametrize("archive_format", ["default", "zip-store", "tgz", "no-archive"])
def test_extracts_real_archives_as_a_subprocess(
    archive_format: str,
    real_mars: dict[str, Path],
    model_inputs: Any,
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    dest = tmp_path / "models"
    outcome = marserve("extract", real_mars[archive_format], dest, subprocess_run=True)
    assert outcome.code == 0, outcome.stderr_lines
    assert read_manifest(dest)["model"]["serializedFile"] == "model.pth"
    assert (dest / "model.pth").read_bytes() == model_inputs.serialized_file.read_bytes()
    assert (dest / "nested" / "deep.txt").read_text() == "deep"
    assert json.loads(outcome.termination_log) == {"modelName": "mlp", "modelVersion": "1.0"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["models"]


def test_format_is_told_by_content_not_name(real_mars: dict[str, Path], tmp_path: Path) -> None:
    zip_named_tgz = shutil.copy(real_mars["default"], tmp_path / "model.tar.gz")
    tgz_named_mar = shutil.copy(real_mars["tgz"], tmp_path / "model.mar")
    first = extract_archive(Path(zip_named_tgz), tmp_path / "a")
    second = extract_archive(Path(tgz_named_mar), tmp_path / "b")
    assert (first / MANIFEST_PATH).is_file()
    assert (second / MANIFEST_PATH).is_file()


def test_plain_tar_with_dot_slash_names_and_an_inner_symlink(
    real_mars: dict[str, Path], tmp_path: Path
) -> None:
    """`tar -C dir .` archives (names under ./) unpack too; links that stay inside are kept."""
    source = real_mars["no-archive"]
    archive_path = tmp_path / "model.tar"
    with tarfile.open(archive_path, "w") as archive:
        archive.add(source, arcname=".")
        link = tarfile.TarInfo("./labels.json")
        link.type, link.linkname = tarfile.SYMTYPE, "index_to_name.json"
        archive.addfile(link)
    dest = extract_archive(archive_path, tmp_path / "models")
    assert (dest / "labels.json").is_symlink()
    assert (dest / "labels.json").read_text() == (source / "index_to_name.json").read_text()


def test_hard_links_inside_the_archive_are_kept(tmp_path: Path, real_mars: dict[str, Path]) -> None:
    archive_path = tmp_path / "model.tgz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(real_mars["no-archive"], arcname="mlp")
        link = tarfile.TarInfo("mlp/weights-copy.pth")
        link.type, link.linkname = tarfile.LNKTYPE, "mlp/model.pth"
        archive.addfile(link)
    dest = extract_archive(archive_path, tmp_path / "models")
    assert (dest / "weights-copy.pth").read_bytes() == (dest / "model.pth").read_bytes()


def test_into_an_empty_mount_point(real_mars: dict[str, Path], tmp_path: Path) -> None:
    """An emptyDir is a mount point: it cannot be replaced, so the model moves into it."""
    dest = tmp_path / "models"
    dest.mkdir()
    assert extract_archive(real_mars["tgz"], dest) == dest
    assert (dest / MANIFEST_PATH).is_file()
    assert not list(dest.glob(f"{STAGING_PREFIX}*"))


def test_force_replaces_the_previous_model(real_mars: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    with pytest.raises(ArchiveError, match="is not empty"):
        extract_archive(real_mars["default"], dest)
    extract_archive(real_mars["default"], dest, force=True)
    assert not (dest / "stale.txt").exists()
    assert (dest / MANIFEST_PATH).is_file()


def test_matching_digest_is_accepted(
    real_mars: dict[str, Path], marserve: Callable[..., Any], tmp_path: Path
) -> None:
    digest = hashlib.sha256(real_mars["default"].read_bytes()).hexdigest()
    outcome = marserve(
        "extract", real_mars["default"], tmp_path / "m", "--sha256", digest.upper(), "--quiet"
    )
    assert (outcome.code, outcome.stderr_lines) == (0, [])
    assert (tmp_path / "m" / MANIFEST_PATH).is_file()


def test_library_errors_are_value_errors_with_one_line(tmp_path: Path) -> None:
    archive_path = tmp_path / "model.mar"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr(MANIFEST_PATH, "{\n broken")
    with pytest.raises(ValueError, match="is not valid JSON") as raised:
        extract_archive(archive_path, tmp_path / "models", limits=ExtractLimits(max_entries=5))
    assert isinstance(raised.value, ArchiveError)
    assert "\n" not in str(raised.value)


def test_progress_lines_for_a_large_archive(marserve: Callable[..., Any], tmp_path: Path) -> None:
    archive_path = tmp_path / "big.mar"
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_PATH, '{"model": {"modelName": "big", "handler": "h.py"}}')
        archive.writestr("h.py", "")
        with archive.open("weights.bin", "w") as weights:
            chunk = bytes(1024 * 1024)
            for _ in range(40):
                weights.write(chunk)
    outcome = marserve("extract", archive_path, tmp_path / "models")
    assert outcome.code == 0
    progress = [line for line in outcome.stderr_lines if line.startswith("unpacking")]
    assert 5 <= len(progress) <= 11, outcome.stderr_lines
    assert progress[-1].startswith(f"unpacking {archive_path}: 100% (40.0 MiB of 40.0 MiB)")
    assert (tmp_path / "models" / "weights.bin").stat().st_size == 40 * 1024 * 1024


def test_unpacked_modes_are_plain(tmp_path: Path) -> None:
    """No setuid or world-writable files come out of an archive, whatever it stored."""
    archive_path = tmp_path / "model.tgz"
    with tarfile.open(archive_path, "w:gz") as archive:
        for name, mode, data in [
            (MANIFEST_PATH, 0o600, b'{"model": {"modelName": "m", "handler": "h.py"}}'),
            ("run.sh", 0o4777, b"#!/bin/sh\n"),
            ("h.py", 0o666, b""),
        ]:
            info = tarfile.TarInfo(name)
            info.mode, info.size = mode, len(data)
            archive.addfile(info, io.BytesIO(data))
    dest = extract_archive(archive_path, tmp_path / "models")
    assert (dest / MANIFEST_PATH).stat().st_mode & 0o7777 == 0o644
    assert (dest / "run.sh").stat().st_mode & 0o7777 == 0o755
    assert (dest / "h.py").stat().st_mode & 0o7777 == 0o644


def test_destination_inside_the_source_directory_is_refused(
    real_mars: dict[str, Path], tmp_path: Path
) -> None:
    source = Path(shutil.copytree(real_mars["no-archive"], tmp_path / "model"))
    with pytest.raises(ArchiveError, match="must not be inside the source directory"):
        extract_archive(source, source / "copy")
    assert not (source / "copy").exists()


def test_extract_command_imports_no_heavy_dependencies() -> None:
    """The init container starts fast: no torch, numpy or aiohttp behind `marserve extract`."""
    probe = (
        "import sys, marserve.archive.extract_command; "
        "print(sorted({'torch', 'numpy', 'aiohttp', 'yaml'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe], check=True, capture_output=True, text=True
    )
    assert done.stdout.strip() == "[]"
