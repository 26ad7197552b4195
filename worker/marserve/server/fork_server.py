"""The fork server every worker process is forked from, and starting it as early as possible.

Importing torch takes seconds. The fork server imports it once, and each worker is a fork of it,
so starting or restarting a worker costs a fork plus its model load, and workers share torch's
memory pages copy-on-write. Nothing in it touches CUDA, so each forked worker initialises its own
device.

This module imports nothing heavy, so `marserve serve` can start the fork server before it imports
asyncio and aiohttp: torch's import, the longest step before a model can answer, then runs while
the front end is still importing and unpacking archives.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver

PRELOAD = [
    "marserve.server.preload_without_gc",
    "torch",
    "marserve.model_loader",
    "marserve.server.worker_main",
]


def context() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context whose processes are forked from the preloaded fork server."""
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(PRELOAD)
    return forkserver


def start() -> None:
    """Starts the fork server now rather than at the first worker's start; does not wait for its
    preload, since a fork request simply queues until the preload is done."""
    context()
    multiprocessing.forkserver.ensure_running()
