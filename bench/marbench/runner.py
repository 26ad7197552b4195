"""One benchmark run: build the archives, measure the physical limit, then drive each server.

Rounds alternate the servers A/B/A/B on each model, so slow drift of a shared machine (other
work, thermal state) spreads over both instead of landing on one.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from marbench import artifacts, grpc_load, load, oip, peers, physical, servers
from marbench.artifacts import BenchModel
from marbench.config import BenchConfig

IDLE_SAMPLES = 8
IDLE_SAMPLE_EVERY_S = 0.25


@dataclass(frozen=True)
class PointResult:
    """One server at one concurrency in one round."""

    concurrency: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int
    average_batch_size: float | None
    cpu_s_per_1k: float
    cpu_cores: float
    error_statuses: dict[str, int]
    capped: bool


@dataclass
class ServerRun:
    """One server's lifetime for one model in one round: start-up, memory and its load points."""

    server: str
    model: str
    round: int
    start_to_first_200_s: float
    idle_rss_bytes: int
    idle_pss_bytes: int
    load_average: float
    peak_rss_bytes: int = 0
    points: list[PointResult] = field(default_factory=list)


@dataclass(frozen=True)
class RunResults:
    physical: dict[str, physical.PhysicalLimit]
    runs: list[ServerRun]
    torch_import_s: float


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _drive(
    server: servers.RunningServer,
    model: BenchModel,
    *,
    concurrency: int,
    duration_s: int,
    config: BenchConfig,
) -> load.LoadResult:
    if server.name == "marserve-grpc":
        return grpc_load.run(
            f"127.0.0.1:{server.ports.grpc_inference}",
            model=model.name,
            body_file=model.body_file,
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=config.max_requests,
        )
    if server.name == "marserve-oip-grpc":
        return grpc_load.run_model_infer(
            f"127.0.0.1:{server.ports.grpc_inference}",
            model=model,
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=config.max_requests,
        )
    if server.name == "marserve-v2-binary":
        body_file, header_length = oip.v2_binary_body(model)
        return load.run(
            f"http://127.0.0.1:{server.ports.inference}/v2/models/{model.name}/infer",
            body_file=body_file,
            content_type="application/octet-stream",
            headers={oip.HEADER_LENGTH: str(header_length)},
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=config.max_requests,
        )
    return load.run(
        f"http://127.0.0.1:{server.ports.inference}{server.endpoint.path}",
        body_file=server.endpoint.body_file,
        content_type=server.endpoint.content_type,
        concurrency=concurrency,
        duration_s=duration_s,
        max_requests=config.max_requests,
    )


def _point(
    server: servers.RunningServer, model: BenchModel, *, concurrency: int, config: BenchConfig
) -> PointResult:
    if config.warmup_s > 0:
        _drive(server, model, concurrency=concurrency, duration_s=config.warmup_s, config=config)
        servers.drain(server, model=model)
    counters_before = server.batch_counters(model=model.name)
    cpu_before = server.stats().cpu_seconds
    result = _drive(
        server, model, concurrency=concurrency, duration_s=config.duration_s, config=config
    )
    cpu_after = server.stats().cpu_seconds
    counters_after = server.batch_counters(model=model.name)
    servers.drain(server, model=model)
    return PointResult(
        concurrency=concurrency,
        throughput=result.throughput,
        p50_ms=result.p50_ms,
        p90_ms=result.p90_ms,
        p99_ms=result.p99_ms,
        max_ms=result.max_ms,
        requests=result.requests,
        errors=result.errors,
        average_batch_size=counters_after.average_batch_size(counters_before),
        cpu_s_per_1k=(cpu_after - cpu_before) * 1000 / max(result.requests, 1),
        cpu_cores=(cpu_after - cpu_before) / result.duration_s,
        error_statuses=result.error_statuses,
        capped=result.capped,
    )


def _idle_memory(server: servers.RunningServer) -> tuple[int, int]:
    """The smallest tree RSS and PSS over 2 s after the first answer.

    The smallest, because a short-lived helper (TorchServe runs a system-metrics collector
    process at start and every minute) is no part of what the server needs to stay up.
    """
    samples = []
    for _ in range(IDLE_SAMPLES):
        time.sleep(IDLE_SAMPLE_EVERY_S)
        samples.append(server.stats(with_pss=True))
    return min(s.rss_bytes for s in samples), min(s.pss_bytes for s in samples)


def _serve_and_measure(
    name: str, model: BenchModel, *, round_index: int, config: BenchConfig
) -> ServerRun:
    run_dir = config.work_dir / "runs" / f"{model.name}-{name}-{round_index}"
    server = servers.start(name, model=model, config=config, run_dir=run_dir)
    try:
        first_200_s = servers.wait_first_200(server, model=model, timeout_s=config.start_timeout_s)
        idle_rss, idle_pss = _idle_memory(server)
        run = ServerRun(
            server=name,
            model=model.name,
            round=round_index,
            start_to_first_200_s=first_200_s,
            idle_rss_bytes=idle_rss,
            idle_pss_bytes=idle_pss,
            # The machine's 1-minute load average: how much else wanted its cores meanwhile.
            load_average=os.getloadavg()[0],
        )
        if config.server_warmup_s > 0:
            # A JVM compiles its hot paths only after thousands of requests: without this
            # TorchServe's first point would measure its interpreter. marserve gets the same.
            _drive(
                server,
                model,
                concurrency=max(config.concurrencies),
                duration_s=config.server_warmup_s,
                config=config,
            )
            servers.drain(server, model=model)
        for concurrency in config.concurrencies:
            point = _point(server, model, concurrency=concurrency, config=config)
            _log(
                f"round {round_index} {model.name} {name} c={concurrency}: "
                f"{point.throughput:.0f} req/s p50 {point.p50_ms:.2f} ms "
                f"p99 {point.p99_ms:.2f} ms errors {point.errors} {point.error_statuses or ''}"
            )
            run.points.append(point)
        run.peak_rss_bytes = max(run.idle_rss_bytes, server.stats().peak_rss_bytes)
        return run
    finally:
        server.stop()


def run(config: BenchConfig) -> RunResults:
    _log(f"building {', '.join(config.models)} with torch-model-archiver")
    built = {
        name: artifacts.build(name, work_dir=config.work_dir, model_yaml=config.model_yaml)
        for name in config.models
    }
    _log("timing a fresh import of torch")
    torch_import_s = physical.torch_import_s()
    limits = {}
    for name, model in built.items():
        _log(f"physical limit of {name}")
        limits[name] = physical.measure(model, iterations=config.physical_iterations)
    runs = []
    for round_index in range(config.rounds):
        for model in built.values():
            for name in config.servers:
                if name in oip.SERVERS and not oip.takes(model):
                    _log(f"round {round_index}: {name} skips {model.name} (its body is no tensor)")
                    continue
                if name in peers.PEERS and not (model.extracted_dir / "model.pt").exists():
                    _log(f"round {round_index}: {name} skips {model.name} (peers load TorchScript)")
                    continue
                _log(f"round {round_index}: {name} serving {model.name}")
                runs.append(_serve_and_measure(name, model, round_index=round_index, config=config))
    return RunResults(physical=limits, runs=runs, torch_import_s=torch_import_s)
