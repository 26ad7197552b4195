"""`marserve archive`: write a model archive with `torch-model-archiver`'s flags.

Archives written here load in TorchServe and marserve alike: same MANIFEST.json fields, same
flattened layout, same four formats. Errors are one line and exit code 2. Two differences from
torch-model-archiver 0.12.0, both where it fails: a missing export path is created, and a
`--handler file.py:function` copies `file.py` (0.12.0 looks for a file named `file.py:function`).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from marserve.archive import contents, writer
from marserve.archive.errors import ArchiveError

EXIT_FAILURE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-name", required=True, help="model name, also the file name")
    parser.add_argument("-v", "--version", required=True, help="model version")
    parser.add_argument("--handler", required=True, help="built-in name or FILE.py[:function]")
    parser.add_argument("--serialized-file", help="weights: .pt/.pth, TorchScript, .onnx, .so")
    parser.add_argument("--model-file", help="Python file with the model class (eager mode)")
    parser.add_argument(
        "--extra-files",
        help="comma-separated files, directories (their contents) or glob patterns",
    )
    parser.add_argument("-r", "--requirements-file", help="per-model pip requirements")
    parser.add_argument("-c", "--config-file", help="model-config YAML")
    parser.add_argument(
        "--export-path", default=os.getcwd(), help="where to write (default: current directory)"
    )
    parser.add_argument(
        "--archive-format",
        default="default",
        choices=sorted(writer.FORMAT_SUFFIXES),
        help="default: deflated zip .mar; zip-store: stored zip; tgz: .tar.gz; "
        "no-archive: a directory",
    )
    parser.add_argument("--runtime", default="python", choices=contents.RUNTIMES)
    parser.add_argument("--envelope", help="request envelope recorded in the manifest (optional)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing archive")


def run(args: argparse.Namespace) -> int:
    request = contents.ArchiveRequest(
        model_name=args.model_name,
        version=args.version,
        handler=args.handler,
        serialized_file=args.serialized_file,
        model_file=args.model_file,
        extra_files=tuple(args.extra_files.split(",")) if args.extra_files else (),
        requirements_file=args.requirements_file,
        config_file=args.config_file,
        runtime=args.runtime,
        envelope=args.envelope,
    )
    try:
        path = create_archive(
            request,
            export_path=Path(args.export_path),
            archive_format=args.archive_format,
            force=args.force,
        )
    except (ArchiveError, OSError) as error:
        print(f"marserve archive: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(path)
    return 0


def create_archive(
    request: contents.ArchiveRequest,
    *,
    export_path: Path,
    archive_format: str,
    force: bool = False,
) -> Path:
    """Writes the archive `request` describes into `export_path`; returns its path."""
    contents.validate_request(request)
    target = writer.archive_path(export_path, request.model_name, archive_format)
    files = contents.collect_files(request)
    manifest = contents.build_manifest(request, created=datetime.now())
    return writer.write_archive(
        files,
        contents.manifest_text(manifest),
        target=target,
        archive_format=archive_format,
        force=force,
    )
