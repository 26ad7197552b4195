"""`marserve serve`: resolve the configuration once, then run the server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from marserve.worker.server import options
from marserve.worker.server.app import Server
from marserve.worker.server.config import ConfigError, ServerConfig
from marserve.worker.server.logs import configure_logging
from marserve.worker.server.model_sources import resolve_models

log = logging.getLogger("marserve.server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = options.build_config(args)
    except ConfigError as error:
        print(f"marserve serve: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log_format)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(serve(config))
    except ConfigError as error:
        print(f"marserve serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"marserve serve: {error}", file=sys.stderr)
        return 1


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed: its C event loop and transports cut the front end's
    CPU per request by about a tenth. None (asyncio's own loop) where it is not installed.
    """
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def serve(config: ServerConfig) -> int:
    """Serves until a stop signal, then shuts down gracefully; returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="marserve-models-") as scratch:
        sources = await asyncio.to_thread(resolve_models, config, scratch=Path(scratch))
        server = Server(config, sources)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.start()
        try:
            await stop.wait()
        finally:
            await server.shutdown()
    return 0
