"""`marserve extract ARCHIVE DEST`: the init container's safe unpacker.

Every failure is one line on stderr and exit code 2; the same line goes to the termination log
(`/dev/termination-log`, or `$MARSERVE_TERMINATION_LOG`) so Kubernetes shows it in the pod's
status and the operator can report it on the InferenceModel. On success the termination log
holds the manifest's model name and version as JSON, which the operator shows as
`status.modelVersion`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marserve.archive import shared_cache
from marserve.archive.errors import ArchiveError
from marserve.archive.extract import extract_archive
from marserve.archive.limits import DownloadOptions, ExtractLimits, format_size, parse_size
from marserve.contract import ExtractedArchive
from marserve.manifest import read_manifest
from marserve.termination_log import write_termination_log

EXIT_FAILURE = 2


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    limits, network = ExtractLimits(), DownloadOptions()
    parser.add_argument(
        "archive",
        metavar="ARCHIVE",
        help="local .mar / .tar.gz / directory, http(s):// or s3:// URL",
    )
    parser.add_argument(
        "dest", metavar="DEST", type=Path, help="model directory to create (or an empty one)"
    )
    parser.add_argument(
        "--sha256", metavar="HEX", help="expected sha256 of the archive, checked before unpacking"
    )
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument(
        "--force", action="store_true", help="replace what DEST holds instead of refusing"
    )
    reuse.add_argument(
        "--shared",
        action="store_true",
        help="DEST is shared by a model's replicas: fill it once under a lock, reuse it when "
        "complete (the termination log records the cache hit)",
    )
    parser.add_argument(
        "--max-archive-size",
        metavar="SIZE",
        type=_size,
        default=limits.max_archive_bytes,
        help=f"largest archive or download (default {format_size(limits.max_archive_bytes)})",
    )
    parser.add_argument(
        "--max-unpacked-size",
        metavar="SIZE",
        type=_size,
        default=limits.max_unpacked_bytes,
        help=f"largest unpacked total (default {format_size(limits.max_unpacked_bytes)})",
    )
    parser.add_argument(
        "--max-entries",
        metavar="N",
        type=int,
        default=limits.max_entries,
        help=f"most entries in the archive (default {limits.max_entries})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=network.timeout_s,
        help=f"seconds a download may stall (default {network.timeout_s:g})",
    )
    parser.add_argument(
        "--attempts",
        metavar="N",
        type=int,
        default=network.attempts,
        help=f"download attempts on connection errors and 5xx (default {network.attempts})",
    )
    parser.add_argument(
        "--retry-backoff",
        metavar="SECONDS",
        type=float,
        default=network.backoff_s,
        help=f"seconds before the first retry, doubled each time (default {network.backoff_s:g})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    limits = ExtractLimits(
        max_archive_bytes=args.max_archive_size,
        max_unpacked_bytes=args.max_unpacked_size,
        max_entries=args.max_entries,
    )
    network = DownloadOptions(
        timeout_s=args.timeout, attempts=max(1, args.attempts), backoff_s=args.retry_backoff
    )
    report = None if args.quiet else _print_progress

    def fill(dest: Path) -> Path:
        return extract_archive(
            args.archive,
            dest,
            sha256=args.sha256,
            limits=limits,
            download_options=network,
            force=args.force,
            report=report,
        )

    model_dir = Path(args.dest).absolute()
    cache_hit: bool | None = None
    try:
        if args.shared:
            cache_hit = shared_cache.fill_once(model_dir, fill)
        else:
            fill(model_dir)
    except ArchiveError as error:
        _fail(str(error))
        return EXIT_FAILURE
    except Exception as error:  # the pod status must still get one line, never a traceback
        _fail(f"unexpected {type(error).__name__}: {' '.join(str(error).split())}")
        return EXIT_FAILURE
    model = read_manifest(model_dir)["model"]
    version = model.get("modelVersion")
    record = ExtractedArchive(
        model_name=model["modelName"],
        model_version=None if version is None else str(version),
        cache_hit=cache_hit,
    )
    write_termination_log(record.to_json())
    if report:
        report(
            f"found {args.archive} in the shared cache at {model_dir}"
            if cache_hit
            else f"extracted {args.archive} into {model_dir}"
        )
    return 0


def _print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fail(message: str) -> None:
    line = f"marserve extract: {message}"
    print(line, file=sys.stderr, flush=True)
    write_termination_log(line)
