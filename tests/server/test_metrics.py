"""The metrics port: TorchServe-compatible and native names, labels, buckets and batching."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]


@pytest.fixture
async def http(auth: dict[str, str]) -> Any:
    async with aiohttp.ClientSession(headers=auth) as session:
        yield session


async def scrape(server: Any, query: str = "") -> dict[str, list[Any]]:
    """Samples by sample name; the metrics port needs no token (Prometheus scrapes it)."""
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{server.metrics}/metrics{query}") as response,
    ):
        assert response.status == 200
        text = await response.text()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    matching = [s for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    return sum(s.value for s in matching)


async def test_concurrent_requests_are_batched(main_server: Any, http: Any) -> None:
    before = await scrape(main_server)
    url = f"{main_server.inference}/predictions/mlp"

    async def one() -> int:
        async with http.post(url, json=[ROW]) as response:
            await response.read()
            return int(response.status)

    for _ in range(3):
        assert await asyncio.gather(*(one() for _ in range(64))) == [200] * 64
    after = await scrape(main_server)
    label = {"model": "mlp"}
    batches = value(after, "marserve_batch_size_count", **label) - value(
        before, "marserve_batch_size_count", **label
    )
    requests = value(after, "marserve_batch_size_sum", **label) - value(
        before, "marserve_batch_size_sum", **label
    )
    assert requests == 192
    assert batches < requests  # some batches held more than one request


async def test_every_documented_metric_is_exported(main_server: Any, http: Any) -> None:
    inference = main_server.inference
    async with http.post(f"{inference}/predictions/mlp", json=[ROW]) as response:
        assert response.status == 200
    async with http.post(f"{inference}/predictions/archived", json=ROW) as response:
        assert response.status == 200
    async with http.post(f"{inference}/predictions/nope", json=ROW) as response:
        assert response.status == 404
    samples = await scrape(main_server)
    ts_labels = {"model_name": "mlp", "model_version": "1.0"}
    for name in (
        "ts_inference_requests_total",
        "ts_inference_latency_microseconds",
        "ts_queue_latency_microseconds",
    ):
        assert value(samples, name, **ts_labels) > 0, name
        assert "hostname" in samples[name][0].labels
    for name in ("PredictionTime", "HandlerTime"):
        (sample,) = [s for s in samples[name] if s.labels["ModelName"] == "archived"]
        assert sample.labels["Level"] == "Model" and sample.labels["Hostname"]
    assert value(samples, "Requests2XX") > 0
    assert value(samples, "Requests4XX") > 0
    assert "Requests5XX" in samples
    assert value(samples, "QueueTime", Level="Host") >= 0 and samples["QueueTime"]
    assert {s.labels["WorkerName"] for s in samples["WorkerLoadTime"]} >= {"mlp-0", "mlp-1"}
    native = {"model": "mlp", "version": "1.0"}
    for name in (
        "marserve_request_duration_seconds",
        "marserve_queue_wait_seconds",
        "marserve_prediction_seconds",
    ):
        buckets = {s.labels["le"] for s in samples[f"{name}_bucket"] if s.labels["model"] == "mlp"}
        assert {"0.0005", "60.0", "+Inf"} <= buckets, name
        assert value(samples, f"{name}_count", **native) > 0, name
    assert value(samples, "marserve_handler_seconds_count", model="archived") > 0
    assert value(samples, "marserve_requests_total", code="200", **native) > 0
    for name in ("marserve_inflight_requests", "marserve_queue_depth"):
        assert [s for s in samples[name] if s.labels["model"] == "mlp"], name
    assert "marserve_worker_restarts_total" in samples
    assert value(samples, "marserve_model_load_seconds", model="mlp") > 0
    assert value(samples, "ScriptedCalls", ModelName="mlp") > 0  # the handler's own metric
    assert value(samples, "marserve_workers", model="mlp") == 2


async def test_messages_a_worker_garbles_are_counted_and_skipped(
    main_server: Any, http: Any
) -> None:
    """A worker writes an unpicklable frame, a bare tuple and results for a batch never sent ahead
    of its results: the front end counts all three, still delivers the batch, keeps the worker."""
    before = await scrape(main_server)
    url = f"{main_server.inference}/predictions/mlp"
    async with http.post(url, json={"garble": True}) as response:
        assert (response.status, await response.text()) == (200, "garbled")
    async with http.post(url, json=[ROW]) as response:
        assert response.status == 200
    after = await scrape(main_server)
    rejected = "marserve_worker_messages_rejected_total"
    assert value(after, rejected, model="mlp") - value(before, rejected, model="mlp") == 3
    restarts = "marserve_worker_restarts_total"
    assert value(after, restarts, model="mlp") == value(before, restarts, model="mlp")
    log = main_server.log()
    assert "sent a message that is skipped: a frame holds tuple" in log
    assert "results for batch -1, which it is not running" in log


async def test_name_query_selects_families_as_torchserve_does(main_server: Any, http: Any) -> None:
    async with http.post(f"{main_server.inference}/predictions/mlp", json=[ROW]) as response:
        assert response.status == 200
    query = (
        "?name[]=ts_inference_requests_total&name[]=marserve_queue_wait_seconds"
        "&name[]=no_such_metric"
    )
    samples = await scrape(main_server, query)
    families = {name for name in samples if not name.endswith(("_bucket", "_count", "_sum"))}
    assert families == {
        "ts_inference_requests_total",
        "marserve_queue_wait_seconds",
        "marserve_queue_wait_seconds_created",
    }
    assert value(samples, "ts_inference_requests_total", model_name="mlp") > 0
    assert value(samples, "marserve_queue_wait_seconds_count", model="mlp") > 0
    assert await scrape(main_server, "?name[]=no_such_metric") == {}
