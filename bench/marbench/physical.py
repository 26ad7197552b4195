"""The physical limit: the forward pass alone, and marserve's handler path without HTTP.

Both run in the bench process before any server starts, so nothing competes with them, on one
torch thread: for models this small a parallel region costs more than it saves, and on a busy
2-core machine a second OpenMP thread that is not scheduled makes the first one spin for
milliseconds. The gap between these and a server's latency at concurrency 1 is what serving costs.
Start-up has a floor too: both servers import torch in a fresh interpreter before their first
answer, so that import is timed as well.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from marbench.artifacts import BenchModel

BATCH_SIZES = (1, 8)
REPEATS = 5
WARMUP_CALLS = 3  # TorchScript's profiling executor optimizes a graph after its first calls
REPEAT_BUDGET_S = 1.0
TORCH_IMPORT_REPEATS = 3
TIME_TORCH_IMPORT = (
    "import time; started = time.perf_counter(); import torch; print(time.perf_counter() - started)"
)


@dataclass(frozen=True)
class PhysicalLimit:
    """Microseconds per call, best of several repeats, by batch size."""

    forward_us: dict[int, float]
    handler_us: dict[int, float]


def _best_mean_us(call: Callable[[], object], *, iterations: int) -> float:
    """Best mean over REPEATS; warm-up and each repeat capped near REPEAT_BUDGET_S for a slow model.

    A ResNet-18 forward takes tens of milliseconds: 2000 iterations of it would take minutes
    and measure nothing the first hundred do not.
    """
    warmup = 0
    started = time.perf_counter()
    while warmup < WARMUP_CALLS or (
        warmup < iterations // 10 and time.perf_counter() - started < REPEAT_BUDGET_S
    ):
        call()
        warmup += 1
    per_call_s = (time.perf_counter() - started) / warmup
    iterations = max(1, min(iterations, int(REPEAT_BUDGET_S / max(per_call_s, 1e-9))))
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(iterations):
            call()
        best = min(best, (time.perf_counter() - started) / iterations)
    return best * 1e6


def _loaded_module(model: BenchModel) -> torch.nn.Module:
    """The module as a server loads it: TorchScript from the archive, eager from memory."""
    scripted = model.extracted_dir / "model.pt"
    if scripted.exists():
        loaded: torch.nn.Module = torch.jit.load(str(scripted))  # type: ignore[no-untyped-call]
        return loaded.eval()
    return model.module


def _request(model: BenchModel, index: int) -> dict[str, Any]:
    return {
        "requestId": f"bench-{index}",
        "parameters": [
            {
                "name": "body",
                "contentType": model.content_type,
                "value": model.body_file.read_bytes(),
            }
        ],
        "headers": [],
    }


def measure(model: BenchModel, *, iterations: int) -> PhysicalLimit:
    """Times forward and handler at batch 1 and 8; raises if the handler path answers wrongly."""
    from marserve.model_loader import load_service

    torch.set_num_threads(1)
    module = _loaded_module(model)
    forward_us: dict[int, float] = {}
    handler_us: dict[int, float] = {}
    service = load_service(model.extracted_dir, batch_size=max(BATCH_SIZES))
    for batch_size in BATCH_SIZES:
        inputs = model.example_input.expand(batch_size, *model.example_input.shape[1:]).contiguous()

        def forward(inputs: torch.Tensor = inputs) -> object:
            with torch.inference_mode():
                return module(inputs)

        def handle(batch: list[dict[str, Any]]) -> object:
            return service.predict(batch)

        batch = [_request(model, index) for index in range(batch_size)]
        results = service.predict(batch)
        if len(results) != batch_size or not all(result.ok for result in results):
            raise RuntimeError(f"{model.name}: handler path failed: {results[:1]}")
        forward_us[batch_size] = _best_mean_us(forward, iterations=iterations)
        handler_us[batch_size] = _best_mean_us(partial(handle, batch), iterations=iterations)
    return PhysicalLimit(forward_us=forward_us, handler_us=handler_us)


def torch_import_s() -> float:
    """Median seconds a fresh interpreter of this venv takes to import torch."""
    command = [sys.executable, "-c", TIME_TORCH_IMPORT]
    runs = [
        float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        for _ in range(TORCH_IMPORT_REPEATS)
    ]
    return statistics.median(runs)
