"""The worker process: loads one copy of a model and answers batches sent by the front end.

It is forked from the fork server (see `worker_process.py`) and works inside the model directory;
handler code runs here, never on the front end's event loop.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from marserve.results import PredictionResult
from marserve.server.ipc import BlockingChannel
from marserve.server.logs import configure_logging

if TYPE_CHECKING:
    from marserve.service import Service

log = logging.getLogger("marserve")

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


def _metric_tuples(service: Service) -> list[tuple[Any, ...]]:
    """Drains the handler's metrics into plain tuples the front end can export."""
    return [
        (
            record.name,
            float(record.value),
            record.unit,
            tuple(sorted(dict(record.dimensions).items())),
            str(record.metric_type),
            record.request_id,
        )
        for record in service.metrics.drain()
    ]


def _load(spec: dict[str, Any]) -> Service:
    from marserve.model_loader import load_service

    return load_service(
        spec["model_dir"],
        model_name=spec["model_name"],
        handler=spec.get("handler"),
        gpu_id=spec.get("gpu_id"),
        batch_size=spec["batch_size"],
        envelope=spec.get("envelope"),
        limit_max_image_pixels=spec.get("limit_max_image_pixels", True),
    )


def serve(channel: BlockingChannel, spec: dict[str, Any]) -> int:
    """Loads the model, reports ready or failed, then answers batches until told to stop."""
    try:
        service = _load(spec)
    except BaseException as error:  # any load failure is reported, not raised
        reason = f"{type(error).__name__}: {error}".strip()
        log.exception("model %s could not be loaded", spec["model_name"])
        channel.send(("failed", reason))
        return 1
    service.context.intermediate_response_sink = lambda result: channel.send(
        ("chunk", result.request_id, result)
    )
    gc.freeze()  # the model and its handler live as long as the worker: see `run_child`
    channel.send(("ready",))
    limit = int(spec.get("memory_limit_mb") or 0) * _MIB
    while (message := channel.receive()) is not None and message[0] == "batch":
        _, batch_id, requests = message
        batch = [request.batch_element() for request in requests]
        try:
            results = service.predict(batch)
        except Exception as error:  # the batch fails, the worker lives on
            results = [
                PredictionResult(
                    request_id=request["requestId"].decode(),
                    status=503,
                    body=json.dumps(
                        {
                            "code": 503,
                            "type": "PredictionError",
                            "message": f"Prediction failed: {error}",
                        }
                    ).encode(),
                    content_type="application/json",
                )
                for request in batch
            ]
        # Measured before sending so the verdict rides with the results: the front end then
        # sends this worker no further batch, and nothing queued can be lost to its exit.
        resident = resident_bytes() if limit else 0
        recycle = resident > limit > 0
        channel.send(("results", batch_id, results, _metric_tuples(service), recycle))
        if recycle:
            log.warning(
                "worker of model %s (pid %d) holds %d MiB, over its %d MiB limit; replacing it",
                spec["model_name"], os.getpid(), resident // _MIB, limit // _MIB,
            )  # fmt: skip
            return MEMORY_RECYCLE_EXIT_CODE
    return 0


def run_child(sock: socket.socket, spec: dict[str, Any]) -> None:
    """The forked worker's entry point: serve on `sock` from inside the model directory.

    Everything torch imported, and later the loaded model, is moved out of the garbage collector's
    reach (`gc.freeze`): a full collection would otherwise walk those hundreds of thousands of
    objects, pausing every request in flight for 50-130 ms, and write to their headers, copying
    the pages this worker shares with the fork server. Then the collector, off in the fork server
    (see `preload_without_gc`), is turned back on for what the handler creates.
    """
    gc.freeze()
    gc.enable()
    os.chdir(spec["model_dir"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(spec.get("log_format", "text"))
    threads = spec.get("intra_op_threads")
    if threads:
        import torch  # already imported by the fork server

        torch.set_num_threads(threads)
    sys.exit(serve(BlockingChannel(sock), spec))
