"""Writing a MAR in one of torch-model-archiver's four formats, atomically.

The archive is written under a temporary name beside its destination and renamed into place,
so a crash or a full disk never leaves a half-written `.mar` where a server would pick it up.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from marserve.archive.errors import ArchiveError
from marserve.manifest import MANIFEST_PATH

#: File name suffix of each `--archive-format`.
FORMAT_SUFFIXES = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}


def archive_path(export_path: Path, model_name: str, archive_format: str) -> Path:
    return export_path / f"{model_name}{FORMAT_SUFFIXES[archive_format]}"


def write_archive(
    files: Mapping[str, Path],
    manifest: str,
    *,
    target: Path,
    archive_format: str,
    force: bool,
) -> Path:
    """Writes `files` (archive name -> source) plus the manifest to `target`; returns it."""
    if target.exists() and not force:
        raise ArchiveError(f"{target} already exists (use --force to overwrite it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    if archive_format == "no-archive":
        _write_directory(files, manifest, target)
        return target
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        if archive_format == "tgz":
            _write_tgz(files, manifest, Path(temporary), top=target.name.removesuffix(".tar.gz"))
        else:
            stored = archive_format == "zip-store"
            _write_zip(files, manifest, Path(temporary), stored=stored)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _write_zip(files: Mapping[str, Path], manifest: str, path: Path, *, stored: bool) -> None:
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name in sorted(files):
            archive.write(files[name], name)
        archive.writestr(MANIFEST_PATH, manifest)


def _write_tgz(files: Mapping[str, Path], manifest: str, path: Path, *, top: str) -> None:
    """Like the real archiver, every member sits under one top folder named after the model."""
    with tarfile.open(path, "w:gz", compresslevel=6, dereference=True) as archive:
        for name in sorted(files):
            archive.add(files[name], arcname=f"{top}/{name}", recursive=False)
        data = manifest.encode()
        info = tarfile.TarInfo(f"{top}/{MANIFEST_PATH}")
        info.size = len(data)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(data))


def _write_directory(files: Mapping[str, Path], manifest: str, target: Path) -> None:
    """`no-archive`: a model directory, built beside `target` and swapped in by rename."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, source in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / name)
        (staging / MANIFEST_PATH).parent.mkdir(parents=True, exist_ok=True)
        (staging / MANIFEST_PATH).write_text(manifest)
        staging.chmod(0o755)
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    target.rename(retired / target.name)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
