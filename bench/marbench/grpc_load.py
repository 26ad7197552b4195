"""The gRPC load generator: TorchServe's `Predictions` or the Open Inference Protocol's
`ModelInfer` from grpc.aio clients, bounded by time and count, reporting what wrk reports for HTTP
so every path shares one table.

Each of `concurrency` clients has its own channel (one HTTP/2 connection, as wrk keeps one
keep-alive connection per client) and sends the model's input, one call at a time, the same load
the HTTP path gets: the body as TorchServe's `data` input, or its tensor as `raw_input_contents`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from marbench import oip
from marbench.artifacts import BenchModel
from marbench.load import LoadResult
from marserve.grpc.torchserve import inference_pb2, inference_pb2_grpc

# The RPC a client calls on its channel.
Rpc = Callable[[grpc.aio.Channel], Callable[..., Awaitable[Any]]]


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
            rpc=lambda channel: inference_pb2_grpc.InferenceAPIsServiceStub(channel).Predictions,
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=max_requests,
        )
    )


def run_model_infer(
    target: str,
    *,
    model: BenchModel,
    concurrency: int,
    duration_s: int,
    max_requests: int,
) -> LoadResult:
    """Drives the Open Inference Protocol's `ModelInfer` on `target` for `duration_s` seconds.

    Its stubs are imported here, not with the module: they declare the same protobuf symbols as
    tritonclient.grpc's, and the test process, which imports this module, imports those too.
    """
    from marserve.grpc.oip import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc

    array = oip.input_array(model)
    tensor = grpc_predict_v2_pb2.ModelInferRequest.InferInputTensor(
        name="data", datatype="FP32", shape=list(array.shape)
    )
    request = grpc_predict_v2_pb2.ModelInferRequest(
        model_name=model.name, inputs=[tensor], raw_input_contents=[array.tobytes()]
    )
    return asyncio.run(
        _drive(
            target,
            request,
            rpc=lambda channel: (
                grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
            ),
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=max_requests,
        )
    )


async def _drive(
    target: str,
    request: Message,
    *,
    rpc: Rpc,
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
            call = rpc(channel)
            while time.perf_counter() < ends and len(latencies) < max_requests:
                sent = time.perf_counter()
                try:
                    await call(request, timeout=10)
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
