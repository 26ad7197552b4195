"""One request from a route into its model's scheduler: one reply shape, in-flight, deadline and
metrics accounted once, whatever the outcome.

The test plays the worker's part: it takes jobs from the scheduler's real queue and answers them
through the calls a worker's dispatch makes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from marserve.inference_request import InferenceRequest
from marserve.results import PredictionResult
from marserve.server.batching import Job
from marserve.server.config import ModelSettings, ServerConfig
from marserve.server.errors import ServingError
from marserve.server.metrics import ServerMetrics
from marserve.server.model_sources import ModelSource
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels


def result(body: bytes, status: int = 200) -> PredictionResult:
    return PredictionResult(request_id="r", status=status, body=body, content_type="text/plain")


def request(request_id: str) -> InferenceRequest:
    return InferenceRequest(request_id=request_id, parameters=(), headers=())


class Model:
    """A model scheduler that is never started, with its metrics registry at hand."""

    def __init__(self, *, timeout_s: float = 60.0, queue_size: int = 10) -> None:
        self.server_metrics = ServerMetrics(hostname="test")
        settings = ModelSettings(response_timeout_s=timeout_s, job_queue_size=queue_size)
        source = ModelSource(
            name="m", version="1.0", model_dir=Path("."), manifest={"model": {}},
            yaml_config={}, settings=settings,
        )  # fmt: skip
        self.scheduler = ModelScheduler(
            source=source,
            config=ServerConfig(),
            metrics=self.server_metrics.for_model(model="m", version="1.0"),
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.server_metrics.registry.get_sample_value(name, labels)

    def inflight(self) -> float | None:
        return self.sample("marserve_inflight_requests", model="m")

    def answered(self, code: int) -> float | None:
        labels = {"model": "m", "version": "1.0", "code": str(code)}
        return self.sample("marserve_requests_total", **labels)

    async def next_job(self) -> Job:
        (job,) = await asyncio.wait_for(
            self.scheduler.queue.take(others_busy=lambda: True), timeout=5
        )
        return job


async def test_a_single_answer_is_one_reply_with_nothing_to_follow() -> None:
    model = Model()
    asking = asyncio.create_task(model.scheduler.infer(request("a")))
    job = await model.next_job()
    assert job.request.request_id == "a"
    assert model.inflight() == 1
    job.deliver(result(b"done"))
    reply = await asyncio.wait_for(asking, timeout=5)
    assert (reply.first.body, reply.rest) == (b"done", None)
    assert model.inflight() == 0
    assert model.answered(200) == 1


async def test_a_streamed_answer_is_its_first_chunk_then_the_rest_in_order() -> None:
    model = Model()
    asking = asyncio.create_task(model.scheduler.infer(request("s")))
    job = await model.next_job()
    job.deliver_chunk(result(b"part0"))
    reply = await asyncio.wait_for(asking, timeout=5)
    assert reply.first.body == b"part0"
    assert reply.rest is not None
    job.deliver_chunk(result(b"part1"))
    job.deliver(result(b"final"))
    assert [r.body async for r in reply.rest] == [b"part1", b"final"]


async def test_a_stream_cut_short_raises_its_error_after_the_chunks_before_it() -> None:
    model = Model()
    asking = asyncio.create_task(model.scheduler.infer(request("s")))
    job = await model.next_job()
    job.deliver_chunk(result(b"part0"))
    reply = await asyncio.wait_for(asking, timeout=5)
    job.deliver_chunk(result(b"part1"))
    job.fail(ServingError(503, "WorkerDiedException", "gone"))
    received = []
    assert reply.rest is not None
    with pytest.raises(ServingError, match="gone"):
        async for chunk in reply.rest:
            received.append(chunk.body)
    assert received == [b"part1"]


async def test_an_unanswered_request_gets_504_at_its_deadline_and_is_counted() -> None:
    model = Model(timeout_s=0.05)
    with pytest.raises(ServingError) as raised:
        await asyncio.wait_for(model.scheduler.infer(request("late")), timeout=5)
    assert raised.value.status == 504
    assert model.inflight() == 0
    assert model.answered(504) == 1


async def test_a_refused_request_is_counted_and_never_in_flight() -> None:
    model = Model(queue_size=1)
    waiting = asyncio.create_task(model.scheduler.infer(request("a")))
    await asyncio.sleep(0)
    with pytest.raises(ServingError) as raised:
        await model.scheduler.infer(request("b"))
    assert raised.value.status == 429
    assert model.answered(429) == 1
    assert model.inflight() == 1  # only the queued one
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert model.inflight() == 0
    assert model.answered(499) == 1  # the client went away before an answer


def test_served_models_find_by_name_and_version() -> None:
    scheduler = Model().scheduler
    models = ServedModels({"m": scheduler})
    assert models.find("m") is scheduler
    assert models.find("m", "1.0") is scheduler
    assert models.find("m", "") is scheduler
    for name, version in (("m", "2.0"), ("other", None)):
        with pytest.raises(ServingError) as raised:
            models.find(name, version)
        assert raised.value.status == 404
    assert not models.ready  # never started: no worker is ready
