"""The worker process: loads one copy of a model and answers batches sent by the front end.

It is forked from the fork server (see `processes.py`) and works inside the model directory;
handler code runs here, never on the front end's event loop.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from marserve.worker.results import PredictionResult
from marserve.worker.server.ipc import BlockingChannel
from marserve.worker.server.logs import configure_logging

if TYPE_CHECKING:
    from marserve.worker.service import Service

log = logging.getLogger("marserve.worker")


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
    from marserve.worker.model_loader import load_service

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
    channel.send(("ready",))
    while (message := channel.receive()) is not None and message[0] == "batch":
        _, batch_id, batch = message
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
        channel.send(("results", batch_id, results, _metric_tuples(service)))
    return 0


def run_child(sock: socket.socket, spec: dict[str, Any]) -> None:
    """The forked worker's entry point: serve on `sock` from inside the model directory."""
    os.chdir(spec["model_dir"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(spec.get("log_format", "text"))
    threads = spec.get("intra_op_threads")
    if threads:
        import torch  # already imported by the fork server

        torch.set_num_threads(threads)
    sys.exit(serve(BlockingChannel(sock), spec))
