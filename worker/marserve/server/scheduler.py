"""One model as the routes see it: its queue, the requests in flight, and its state.

`infer` is the one request path: it queues a request, holds its deadline and records its metrics
once, whatever the outcome. The model's worker processes are the pool's (see `worker_pool.py`);
the scheduler alone owns the model's state (LOADING, READY, FAILED, STOPPING), which the pool
moves only by reporting that a worker loaded or that the model cannot load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from marserve.inference_request import InferenceRequest
from marserve.server.batching import DeadlineSweep, Job, ModelQueue, QueueFullError, Reply
from marserve.server.config import ServerConfig
from marserve.server.errors import ServingError
from marserve.server.metrics import ModelMetrics
from marserve.server.model_sources import ModelSource
from marserve.server.states import ModelState
from marserve.server.worker_pool import WorkerPool

log = logging.getLogger("marserve.server.scheduler")


class ModelScheduler:
    """One model's queue, state and worker pool; routes hand it requests through `infer`."""

    def __init__(self, *, source: ModelSource, config: ServerConfig, metrics: ModelMetrics) -> None:
        self.source = source
        self.settings = source.settings
        self.metrics = metrics
        self.queue = ModelQueue(
            capacity=self.settings.job_queue_size,
            batch_size=self.settings.batch_size,
            max_batch_delay_s=self.settings.max_batch_delay_ms / 1000,
        )
        self.status = ModelState.LOADING
        self.failure: str | None = None
        self._inflight = 0
        self._pool = WorkerPool(
            source=source,
            config=config,
            queue=self.queue,
            metrics=metrics,
            loaded=self._loaded,
            failed=self._failed,
        )
        self.metrics.watch(
            inflight=lambda: self._inflight,
            queued=lambda: len(self.queue),
            workers=self._pool.serving,
        )
        self._deadlines = DeadlineSweep(
            timeout_s=self.settings.response_timeout_s, expired=self._timed_out
        )

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def ready(self) -> bool:
        return self.status == ModelState.READY and self._pool.serving() > 0

    def start(self) -> None:
        self._pool.start()

    async def infer(self, request: InferenceRequest) -> Reply:
        """Queues one request and waits for its answer, or raises a ServingError (504 at deadline).

        The request counts as in flight and holds a deadline until its first result; its metrics
        are recorded once whatever happens, a refusal at the queue (429, 503) included.
        """
        job = self.admit(request)
        code = 499  # the client went away before an answer
        try:
            first = await job.outcome
            code = first.status
            return Reply(first, job.rest())
        except ServingError as error:
            code = error.status
            raise
        finally:
            self.settle(job, code)

    def admit(self, request: InferenceRequest) -> Job:
        """Queues a request as a job in flight with a deadline, or raises the ServingError that
        refuses it (counted). Each admitted job is `settle`d once its outcome is known: `infer`
        does both; the inference port's own connections call them around a callback."""
        job = Job(request_id=request.request_id, request=request, loop=asyncio.get_running_loop())
        try:
            self.submit(job)
        except ServingError as error:
            self.metrics.request_done(code=error.status, total_s=0.0, queue_s=-1.0)
            raise
        self._inflight += 1
        self._deadlines.add(job)
        return job

    def settle(self, job: Job, code: int) -> None:
        """The job's first answer (or failure) is in: no longer in flight; its metrics."""
        self._inflight -= 1
        queue_s = job.dispatched - job.enqueued if job.dispatched >= 0 else -1.0
        total_s = time.monotonic() - job.enqueued
        self.metrics.request_done(code=code, total_s=total_s, queue_s=queue_s)

    def submit(self, job: Job) -> None:
        """Queues a job or raises the ServingError that explains why it cannot be."""
        if self.status is ModelState.FAILED:
            raise self._load_failed()
        if self.status is ModelState.STOPPING:
            raise ServingError(503, "ServiceUnavailable", "The server is shutting down")
        try:
            self.queue.put(job)
        except QueueFullError:
            raise ServingError(
                429,
                "TooManyRequests",
                f"Model {self.name!r} has {self.queue.capacity} requests queued; retry later",
                headers={"Retry-After": "1"},
            ) from None

    async def drain(self, timeout: float) -> None:
        """Waits up to `timeout` for queued and running requests to finish."""
        deadline = time.monotonic() + timeout
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.status != ModelState.FAILED:
            self.status = ModelState.STOPPING
        await self._pool.stop()
        self.queue.fail_all(ServingError(503, "ServiceUnavailable", "The server stopped"))

    def _timed_out(self) -> ServingError:
        timeout = self.settings.response_timeout_s
        return ServingError(
            504, "ResponseTimeout", f"Model {self.name!r} did not answer within {timeout:g} s"
        )

    def describe(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "modelName": self.name,
            "modelVersion": self.source.version,
            "modelDir": str(self.source.model_dir),
            "status": self.status,
            "failure": self.failure,
            "ready": self.ready,
            "minWorkers": settings.min_workers,
            "maxWorkers": settings.max_workers,
            "batchSize": settings.batch_size,
            "maxBatchDelay": settings.max_batch_delay_ms,
            "responseTimeout": settings.response_timeout_s,
            "startupTimeout": settings.startup_timeout_s,
            "deviceIds": list(settings.device_ids),
            "jobQueueStatus": {
                "remainingCapacity": self.queue.capacity - len(self.queue),
                "pendingRequests": len(self.queue),
            },
            "workers": self._pool.describe(),
        }

    def _loaded(self) -> None:
        """A worker has loaded the model: the first one makes a loading model ready."""
        if self.status == ModelState.LOADING:
            self.status = ModelState.READY

    def _failed(self, reason: str) -> None:
        """The model cannot be loaded: it refuses requests from now on, and those queued now."""
        self.status = ModelState.FAILED
        self.failure = reason
        log.error("model %s failed to load: %s", self.name, reason)
        self.queue.fail_all(self._load_failed())

    def _load_failed(self) -> ServingError:
        """The answer to every request of a model that cannot load, with the reason it cannot."""
        return ServingError(
            503, "ModelLoadFailed", f"Model {self.name!r} failed to load: {self.failure}"
        )
