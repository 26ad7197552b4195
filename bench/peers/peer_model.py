"""What every peer server does with a request, written once: load, decode, batch, forward, count.

Each peer's own file (kserve_server.py, mlserver_server.py, ...) only adapts its framework to
these functions, so the peers differ in serving alone. This runs inside each peer's venv: it
needs torch and Pillow, and from marserve only its thread rule (`marserve.server.cpu_threads`,
standard library alone), which the bench puts on PYTHONPATH so every server sizes torch's
threads alike.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import mmap
import os
import socket
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from marserve.server.cpu_threads import ThreadGovernor, ThreadPlan, thread_plan

IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff")  # PNG, JPEG
COUNTERS = struct.Struct("<QQ")  # requests, batches
COUNTERS_FILE_VARIABLE = "MARBENCH_BATCH_COUNTERS"


def arguments(description: str | None) -> argparse.Namespace:
    """The command line every peer server takes from the bench (unknown flags are left alone)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-file", required=True, type=Path, help="a TorchScript file")
    parser.add_argument("--name", required=True, help="the model's name in URLs")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-batch-delay-ms", type=float, default=5.0)
    args, _ = parser.parse_known_args()
    return args


def free_port() -> int:
    """A port for what a peer must open beside HTTP (gRPC, metrics) and the bench never uses."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torch_threads() -> ThreadPlan:
    """marserve's rule for one worker: every usable CPU but one while batches are quick, all of
    them while they are long (`cpu_threads.ThreadGovernor`)."""
    plan = thread_plan(workers=1, cpus=len(os.sched_getaffinity(0)), environ={})
    assert plan is not None, "an empty environment leaves the choice to the rule"
    return plan


class BatchCounter:
    """Requests and batches the model ran, in a shared 16-byte file the bench reads.

    A memory-mapped write costs about a microsecond per batch, so counting does not slow the
    peer down the way an HTTP metrics scrape or a log line would.
    """

    def __init__(self, path: str | None) -> None:
        self._map: mmap.mmap | None = None
        if path:
            with open(path, "r+b") as file:
                self._map = mmap.mmap(file.fileno(), COUNTERS.size)
        self.requests = self.batches = 0

    def add(self, size: int) -> None:
        self.requests += size
        self.batches += 1
        if self._map is not None:
            COUNTERS.pack_into(self._map, 0, self.requests, self.batches)


class TorchScriptModel:
    """The model as every peer serves it: one TorchScript module on marserve's thread rule."""

    def __init__(self, model_file: str | Path) -> None:
        self.threads = ThreadGovernor(torch_threads(), torch.set_num_threads)
        self.module = torch.jit.load(str(model_file)).eval()
        self.counter = BatchCounter(os.environ.get(COUNTERS_FILE_VARIABLE))

    def predict(self, rows: Sequence[torch.Tensor]) -> list[list[float]]:
        """One forward pass over the batch; one list of floats per row."""
        self.counter.add(len(rows))
        started = time.perf_counter()
        with torch.inference_mode():
            outputs: list[list[float]] = self.module(torch.stack(list(rows))).tolist()
        self.threads.batch_took(time.perf_counter() - started)
        return outputs


def image_tensor(data: bytes) -> torch.Tensor:
    """A PNG or JPEG file as a 3xHxW float tensor in [0, 1], as the archives' handler decodes it."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255.0


def row_tensor(value: object) -> torch.Tensor:
    """One request's input: a list of floats, base64 text of an image, or a raw body.

    A raw body is what marserve gets: image bytes, or a JSON list of floats.
    """
    if isinstance(value, str):
        return image_tensor(base64.b64decode(value))
    if isinstance(value, (bytes, bytearray)):
        if bytes(value[:4]).startswith(IMAGE_SIGNATURES):
            return image_tensor(bytes(value))
        value = json.loads(value)
    return torch.tensor(value, dtype=torch.float32)


def v2_rows(data: Sequence[Any], shape: Sequence[int]) -> list[Any]:
    """An Open Inference Protocol tensor's flat data as one entry per row.

    A [n, 8] FP32 tensor gives n rows of floats; a [n] BYTES tensor gives n images.
    """
    if len(shape) < 2:
        return list(data)
    width = len(data) // shape[0]
    return [list(data[index : index + width]) for index in range(0, len(data), width)]


def flat(outputs: Sequence[Sequence[float]]) -> list[float]:
    """Rows of floats as the flat data of an Open Inference Protocol tensor."""
    return [value for row in outputs for value in row]
