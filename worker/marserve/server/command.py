"""`marserve serve`: resolve the configuration once, start the fork server, then run the server.

This module is imported to add the subcommand's flags, so it stays light: the fork server is
started before the event loop's and aiohttp's modules are imported, and torch's import in the fork
server overlaps theirs (see `fork_server.py`).
"""

from __future__ import annotations

import argparse
import sys

from marserve.server import fork_server, options
from marserve.server.config import ConfigError
from marserve.server.logs import configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serves until stopped; the exit code is 2 for a configuration error (flags, files, model
    settings), 1 for an OS error such as a port in use."""
    try:
        config = options.build_config(args)
        configure_logging(config.log_format)
        fork_server.start()
        from marserve.server import main_loop  # only now: see the module's docstring

        return main_loop.run(config)
    except ConfigError as error:
        print(f"marserve serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"marserve serve: {error}", file=sys.stderr)
        return 1
