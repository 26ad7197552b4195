"""The worker process: loads one copy of a model and answers batches sent by the front end.

It is forked from the fork server (see `worker_process.py`) and works inside the model directory;
handler code runs here, never on the front end's event loop.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from marserve import model_packages, responses
from marserve.server.cpu_threads import ThreadGovernor
from marserve.server.ipc import BlockingChannel, Unreadable
from marserve.server.logs import configure_logging
from marserve.server.messages import (
    TO_WORKER,
    BatchResults,
    Chunk,
    FromWorker,
    Loaded,
    LoadFailed,
    Stop,
    ToWorker,
    WorkerSpec,
)

if TYPE_CHECKING:
    from marserve.service import Service

log = logging.getLogger("marserve")

WorkerChannel = BlockingChannel[FromWorker, ToWorker]
MEMORY_RECYCLE_EXIT_CODE = 75  # EX_TEMPFAIL: a planned replacement, not a crash
_MIB = 2**20


def resident_bytes() -> int:
    """The process's resident memory now: one read of /proc/self/statm, cheap after every batch.

    Where /proc is absent, getrusage's peak resident size stands in; a peak only overstates,
    so a worker is replaced early rather than too late.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _load(spec: WorkerSpec) -> Service:
    from marserve.model_loader import load_service

    return load_service(
        Path(spec.model_dir),
        model_name=spec.model_name,
        handler=spec.handler,
        gpu_id=spec.gpu_id,
        batch_size=spec.batch_size,
        yaml_config=spec.yaml_config,
    )


def _thread_governor(spec: WorkerSpec) -> ThreadGovernor | None:
    """torch's intra-op threads for this worker, moved with its batch times (`cpu_threads`);
    None where the user's environment set them."""
    if spec.threads is None:
        return None
    import torch  # already imported by the fork server

    return ThreadGovernor(spec.threads, torch.set_num_threads)


def serve(channel: WorkerChannel, spec: WorkerSpec) -> int:
    """Loads the model, reports it loaded or failed, then answers batches until told to stop."""
    try:
        service = _load(spec)
    except BaseException as error:  # any load failure is reported, not raised
        reason = f"{type(error).__name__}: {error}".strip()
        log.exception("model %s could not be loaded", spec.model_name)
        channel.send(LoadFailed(reason))
        return 1
    service.context.intermediate_response_sink = lambda result: channel.send(
        Chunk(result.request_id, result)
    )
    gc.freeze()  # the model and its handler live as long as the worker: see `run_child`
    governor = _thread_governor(spec)
    channel.send(Loaded())
    limit = spec.memory_limit_mb * _MIB
    while (message := channel.receive()) is not None and not isinstance(message, Stop):
        if isinstance(message, Unreadable):
            log.error("worker of model %s skipped a message: %s", spec.model_name, message.reason)
            continue
        batch = [request.batch_element() for request in message.requests]
        started = time.perf_counter()
        try:
            results = service.predict(batch)
        except Exception as error:  # the batch fails, the worker lives on
            results = [
                responses.failure(
                    request_id=request.request_id,
                    code=503,
                    error_type="PredictionError",
                    message=f"Prediction failed: {error}",
                )
                for request in message.requests
            ]
        if governor is not None:
            governor.batch_took(time.perf_counter() - started)
        # Measured before sending so the verdict rides with the results: the front end then
        # sends this worker no further batch, and nothing queued can be lost to its exit.
        resident = resident_bytes() if limit else 0
        recycle = resident > limit > 0
        channel.send(BatchResults(message.batch_id, results, service.metrics.drain(), recycle))
        if recycle:
            log.warning(
                "worker of model %s (pid %d) holds %d MiB, over its %d MiB limit; replacing it",
                spec.model_name, os.getpid(), resident // _MIB, limit // _MIB,
            )  # fmt: skip
            return MEMORY_RECYCLE_EXIT_CODE
    return 0


def run_child(sock: socket.socket, spec: WorkerSpec) -> None:
    """The forked worker's entry point: serve on `sock` from inside the model directory.

    Everything torch imported, and later the loaded model, is moved out of the garbage collector's
    reach (`gc.freeze`): a full collection would otherwise walk those hundreds of thousands of
    objects, pausing every request in flight for 50-130 ms, and write to their headers, copying
    the pages this worker shares with the fork server. Then the collector, off in the fork server
    (see `preload_without_gc`), is turned back on for what the handler creates.
    """
    gc.freeze()
    gc.enable()
    os.chdir(spec.model_dir)
    model_packages.add_to_sys_path(Path(spec.model_dir))  # before the handler is imported
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(spec.log_format)
    sys.exit(serve(BlockingChannel(sock, accepts=TO_WORKER), spec))
