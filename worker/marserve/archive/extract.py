"""`extract_archive`: fetch, verify and unpack a model archive into place, all or nothing.

Everything is unpacked into a hidden staging directory first and moved into DEST only once the
archive passed every check, so DEST never holds a partial model. DEST may already exist as an
empty directory (a Kubernetes emptyDir mount, whose parent may be read-only): then staging lives
inside it and its entries are moved up.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from marserve.archive import containers, download, safe_extract
from marserve.archive.errors import ArchiveError
from marserve.archive.limits import (
    DEFAULT_DOWNLOAD_OPTIONS,
    DEFAULT_LIMITS,
    DownloadOptions,
    ExtractLimits,
    format_size,
)
from marserve.archive.progress import Progress, Report
from marserve.manifest import (
    MANIFEST_PATH,
    ManifestError,
    parse_manifest,
    require_referenced_files,
)

STAGING_PREFIX = ".marserve-extract-"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def extract_archive(
    source: Path | str,
    dest: Path,
    *,
    sha256: str | None = None,
    limits: ExtractLimits = DEFAULT_LIMITS,
    download_options: DownloadOptions = DEFAULT_DOWNLOAD_OPTIONS,
    force: bool = False,
    report: Report | None = None,
) -> Path:
    """Unpacks `source` (path or URL) so that `dest` is the model directory; returns `dest`.

    Raises `ArchiveError` with a one-line message; `dest` is then as it was before the call.
    """
    expected = _normalise_digest(sha256)
    dest = Path(dest).absolute()
    staging = _make_staging(dest, force)
    try:
        archive = _local_copy(
            str(source),
            staging=staging,
            limits=limits,
            options=download_options,
            report=report,
            expected=expected,
        )
        tree = staging / "tree"
        tree.mkdir()
        _unpack(archive, tree, name=_display_name(source), limits=limits, report=report)
        model_root = _model_root(tree, _display_name(source))
        _publish(model_root, dest, staging)
        return dest
    except OSError as error:
        raise ArchiveError(f"cannot unpack {_display_name(source)} into {dest}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(
    archive: Path, tree: Path, *, name: str, limits: ExtractLimits, report: Report | None
) -> None:
    try:
        with containers.open_entries(archive, limits=limits) as listing:
            progress = Progress(f"unpacking {name}", listing.declared_bytes, report)
            safe_extract.write_entries(listing, tree, limits=limits, progress=progress)
    except containers.CORRUPT_ARCHIVE_ERRORS as error:
        raise ArchiveError(f"{name} is corrupt or truncated: {error}") from error


def _display_name(source: Path | str) -> str:
    text = str(source)
    return download.display_url(text) if download.is_remote(text) else text


def _normalise_digest(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not _SHA256_HEX.match(digest):
        raise ArchiveError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    return digest


def _make_staging(dest: Path, force: bool) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=_staging_parent(dest, force)))
    except OSError as error:
        raise ArchiveError(f"cannot prepare {dest} for unpacking: {error}") from error


def _staging_parent(dest: Path, force: bool) -> Path:
    if dest.exists():
        if not dest.is_dir():
            raise ArchiveError(f"{dest} exists and is not a directory")
        if not force and any(dest.iterdir()):
            raise ArchiveError(f"{dest} is not empty (use --force to replace what it holds)")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.parent


def _local_copy(
    source: str,
    *,
    staging: Path,
    limits: ExtractLimits,
    options: DownloadOptions,
    report: Report | None,
    expected: str | None,
) -> Path:
    """The archive as a local path, downloaded if remote, with its digest checked."""
    if download.is_remote(source):
        target = staging / "archive"
        actual = download.download(source, target, limits=limits, options=options, report=report)
        _check_digest(actual, expected, source)
        return target
    path = Path(source)
    if not path.exists():
        raise ArchiveError(f"{source} does not exist")
    if path.is_dir() and staging.resolve().is_relative_to(path.resolve()):
        raise ArchiveError(f"the destination must not be inside the source directory {source}")
    if path.is_file() and path.stat().st_size > limits.max_archive_bytes:
        raise ArchiveError(
            f"{source} is {format_size(path.stat().st_size)}, over the limit of "
            f"{format_size(limits.max_archive_bytes)} (--max-archive-size)"
        )
    if expected is not None:
        if path.is_dir():
            raise ArchiveError(f"--sha256 needs an archive file; {source} is a directory")
        _check_digest(file_sha256(path), expected, source)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(safe_extract.CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(actual: str, expected: str | None, source: str) -> None:
    if expected is not None and actual != expected:
        raise ArchiveError(f"sha256 of {_display_name(source)} is {actual}, expected {expected}")


def _model_root(tree: Path, name: str) -> Path:
    """The unpacked directory holding the manifest: the root, or its one top folder (tgz)."""
    candidates = [tree]
    children = list(tree.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        candidates.append(children[0])
    for root in candidates:
        if (root / MANIFEST_PATH).is_file():
            try:
                manifest = parse_manifest((root / MANIFEST_PATH).read_bytes())
                require_referenced_files(manifest, root)
            except ManifestError as error:
                raise ArchiveError(f"{name}: {error}") from error
            return root
    raise ArchiveError(f"{name} has no {MANIFEST_PATH}; it is not a model archive")


def _publish(model_root: Path, dest: Path, staging: Path) -> None:
    """Moves the checked model into `dest`: one rename, or entry by entry into a mount point."""
    if not dest.exists():
        model_root.rename(dest)
        return
    for old in dest.iterdir():
        if old != staging:
            _remove(old)
    moved: list[Path] = []
    try:
        for child in list(model_root.iterdir()):
            target = dest / child.name
            child.rename(target)
            moved.append(target)
    except OSError:
        for target in moved:
            _remove(target)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
