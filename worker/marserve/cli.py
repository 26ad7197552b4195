"""The `marserve` command: one entry point whose subcommands live in their own modules.

Subcommand modules are imported only when chosen, so `marserve extract` in an init container
never pays for importing torch or aiohttp.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast


class Subcommand(Protocol):
    """What a subcommand module provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("marserve.server.command", "serve models over HTTP"),
    "archive": ("marserve.archive.archive_command", "write a model archive (.mar)"),
    "extract": ("marserve.archive.extract_command", "safely unpack a model archive"),
    "install-deps": (
        "marserve.install_deps_command",
        "pip-install an extracted model's requirementsFile for its workers",
    ),
}


def _load(module_name: str) -> Subcommand:
    return cast(Subcommand, importlib.import_module(module_name))


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """Builds the parser; only the chosen subcommand's module is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="marserve", description="Serve TorchServe model archives (.mar) with marserve."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=summary, add_help=name == chosen)
        if name == chosen:
            _load(module_name).add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in arguments if arg in SUBCOMMANDS), None)
    args = build_parser(chosen).parse_args(arguments)
    module_name, _ = SUBCOMMANDS[args.command]
    return _load(module_name).run(args)


if __name__ == "__main__":
    sys.exit(main())
