"""The gRPC load generator: TorchServe's `Predictions` RPC from grpc.aio clients, bounded by time
and count, reporting what wrk reports for HTTP so both paths share one table.

Each of `concurrency` clients has its own channel (one HTTP/2 connection, as wrk keeps one
keep-alive connection per client) and sends the model's body as the `data` input, one call at a
time, the same load the HTTP path gets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import grpc

from marbench.load import LoadResult
from marserve.grpc.torchserve import inference_pb2, inference_pb2_grpc


def run(
    target: str,
    *,
    model: str,
    body_file: Path,
    concurrency: int,
    duration_s: int,
    max_requests: int,
) -> LoadResult:
    """Drives `Predictions` on `target` (host:port) for `duration_s` seconds."""
    request = inference_pb2.PredictionsRequest(
        model_name=model, input={"data": body_file.read_bytes()}
    )
    return asyncio.run(
        _drive(
            target,
            request,
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=max_requests,
        )
    )


async def _drive(
    target: str,
    request: inference_pb2.PredictionsRequest,
    *,
    concurrency: int,
    duration_s: int,
    max_requests: int,
) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    ends = started + duration_s

    async def client() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            predictions = inference_pb2_grpc.InferenceAPIsServiceStub(channel).Predictions
            while time.perf_counter() < ends and len(latencies) < max_requests:
                sent = time.perf_counter()
                try:
                    await predictions(request, timeout=10)
                except grpc.aio.AioRpcError as error:
                    statuses[error.code().name] += 1
                latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e3

    return LoadResult(
        requests=len(latencies),
        errors=sum(statuses.values()),
        duration_s=elapsed,
        p50_ms=percentile(0.50),
        p90_ms=percentile(0.90),
        p99_ms=percentile(0.99),
        max_ms=ordered[-1] * 1e3,
        capped=len(latencies) >= max_requests,
        error_statuses=dict(statuses),
    )
