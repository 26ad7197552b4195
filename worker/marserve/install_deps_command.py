"""`marserve install-deps MODEL_DIR`: the init container's install of the archive's requirements.

It runs after `marserve extract`, with the same code `marserve serve --install-model-deps` uses,
so the worker container finds the packages where a local server would have put them. The index
comes from `MARSERVE_PACKAGE_*` variables (the password from a Secret). A failure is one line on
stderr and in the termination log, which the operator reports as `DependencyInstallFailed`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from marserve import model_packages
from marserve.manifest import ManifestError, read_manifest
from marserve.model_packages import DependencyInstallError, PackageIndex
from marserve.termination_log import write_termination_log

EXIT_FAILURE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", metavar="MODEL_DIR", type=Path, help="an extracted model directory"
    )
    parser.add_argument(
        "--cache",
        metavar="DIR",
        type=Path,
        help="where installs are kept for reuse (default ~/.cache/marserve/model-packages)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=model_packages.DEFAULT_TIMEOUT_S,
        help=f"longest pip may run (default {model_packages.DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        manifest = read_manifest(args.model_dir)
        requirements = model_packages.requirements_file(args.model_dir, manifest)
        if requirements is None:
            logging.getLogger("marserve").info("the archive names no requirements file")
            return 0
        model_packages.install_requirements(
            args.model_dir,
            requirements=requirements,
            cache=args.cache or model_packages.default_cache(),
            index=PackageIndex.from_environ(os.environ),
            timeout_s=args.timeout,
        )
    except (ManifestError, DependencyInstallError) as error:
        line = f"marserve install-deps: {error}"
        print(line, file=sys.stderr, flush=True)
        write_termination_log(line)
        return EXIT_FAILURE
    return 0
