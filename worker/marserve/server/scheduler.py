"""Worker processes of one model: start, feed batches, watch over, restart with back-off.

Each worker process loads its own copy of the model. A worker that dies fails its in-flight batch
with 503 and is restarted after a capped exponential back-off; a worker that cannot load the model
marks the model FAILED with the reason, because restarting a broken archive forever helps no one.
A worker past its memory limit says so with its last results and is replaced at once: a planned
recycle, neither a failure nor a reason to back off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marserve.server import cpu_threads
from marserve.server.batching import DeadlineSweep, Job, ModelQueue, QueueFullError
from marserve.server.config import ServerConfig
from marserve.server.devices import gpu_for_worker, visible_gpus
from marserve.server.errors import ServingError, worker_died
from marserve.server.ipc import AsyncChannel
from marserve.server.metrics import ModelMetrics
from marserve.server.model_sources import ModelSource
from marserve.server.worker_process import WorkerProcess

log = logging.getLogger("marserve.server.scheduler")

BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 30.0
HEALTHY_UPTIME_S = 60.0
CRASHED = "crash"
RECYCLED_FOR_MEMORY = "memory"


@dataclass
class WorkerSlot:
    """What the management API shows about one worker slot."""

    index: int
    gpu_id: int | None
    state: str = "STARTING"
    pid: int | None = None
    started_at: float = field(default_factory=time.time)
    restarts: int = 0
    load_seconds: float | None = None


class ModelScheduler:
    """One model's queue and worker processes; the data plane the HTTP routes call into."""

    def __init__(self, *, source: ModelSource, config: ServerConfig, metrics: ModelMetrics) -> None:
        self.source = source
        self.settings = source.settings
        self.metrics = metrics
        self._config = config
        self.queue = ModelQueue(
            capacity=self.settings.job_queue_size,
            batch_size=self.settings.batch_size,
            max_batch_delay_s=self.settings.max_batch_delay_ms / 1000,
        )
        visible = visible_gpus(os.environ)
        self.workers = [
            WorkerSlot(
                index=index,
                gpu_id=gpu_for_worker(
                    index,
                    device_ids=self.settings.device_ids,
                    visible=visible,
                    device_type=self.settings.device_type,
                ),
            )
            for index in range(self.settings.min_workers)
        ]
        self.status = "LOADING"
        self.failure: str | None = None
        self.inflight = 0
        self.metrics.watch(inflight=lambda: self.inflight, queued=lambda: len(self.queue))
        self.deadlines = DeadlineSweep(
            timeout_s=self.settings.response_timeout_s, expired=self._timed_out
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._batch_ids = 0

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def ready(self) -> bool:
        return self.status == "READY" and any(w.state in ("READY", "BUSY") for w in self.workers)

    def start(self) -> None:
        if self.source.failure is not None:
            for worker in self.workers:
                self._fail(worker, self.source.failure)
            return
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in self.workers]

    def submit(self, job: Job) -> None:
        """Queues a job or raises the ServingError that explains why it cannot be."""
        if self.status == "FAILED":
            raise ServingError(
                503, "ModelLoadFailed", f"Model {self.name!r} failed to load: {self.failure}"
            )
        if self.status == "STOPPING":
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
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.status != "FAILED":
            self.status = "STOPPING"
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.queue.fail_all(ServingError(503, "ServiceUnavailable", "The server stopped"))

    def _timed_out(self) -> ServingError:
        timeout = self.settings.response_timeout_s
        return ServingError(
            504, "ResponseTimeout", f"Model {self.name!r} did not answer within {timeout:g} s"
        )

    def _others_busy(self) -> bool:
        """Whether every worker but the one asking is busy (the asking one is idle)."""
        return sum(w.state == "BUSY" for w in self.workers) >= len(self.workers) - 1 > 0

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
            "workers": [
                {
                    "id": f"{self.name}-{w.index}",
                    "state": w.state,
                    "pid": w.pid,
                    "gpu": w.gpu_id,
                    "startTime": w.started_at,
                    "restarts": w.restarts,
                    "loadSeconds": w.load_seconds,
                }
                for w in self.workers
            ],
        }

    async def _supervise(self, worker: WorkerSlot) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                reason = await self._run_process(worker)
            except Exception as error:  # a supervisor bug must show, not leave a silent slot
                log.exception("supervisor of %s-%d failed", self.name, worker.index)
                self._fail(worker, f"worker supervision failed: {error!r}")
                return
            if reason is None:
                return
            if reason == RECYCLED_FOR_MEMORY:
                delay = 0.0
                self.metrics.memory_recycles.inc()
            else:
                failures = 0 if time.monotonic() - started > HEALTHY_UPTIME_S else failures
                delay = min(BACKOFF_FIRST_S * 2**failures, BACKOFF_CAP_S)
                failures += 1
                self.metrics.restarts.inc()
            worker.restarts += 1
            worker.state = "RESTARTING"
            log.warning(
                "worker %s-%d ended (%s); restarting in %.2fs",
                self.name, worker.index, reason, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _run_process(self, worker: WorkerSlot) -> str | None:
        """Runs one worker process to its end; returns why it should be restarted, or None."""
        parent, child = socket.socketpair()
        spawned = time.monotonic()
        spec = {
            "model_dir": str(self.source.model_dir),
            "model_name": self.name,
            "handler": self._config.handler,
            "gpu_id": worker.gpu_id,
            "batch_size": self.settings.batch_size,
            "intra_op_threads": cpu_threads.intra_op_threads(
                workers=self.settings.min_workers,
                cpus=cpu_threads.usable_cpus(),
                environ=os.environ,
            ),
            "log_format": self._config.log_format,
            "memory_limit_mb": self.settings.max_worker_memory_mb,
        }
        try:
            process = await WorkerProcess.start(sock=child, spec=spec)
        except Exception as error:  # the fork server could not start or fork
            parent.close()
            self._fail(worker, f"cannot start a worker process: {error}")
            return None
        finally:
            child.close()
        channel = await AsyncChannel.open(parent)
        worker.pid, worker.state, worker.started_at = process.pid, "STARTING", time.time()
        try:
            message = await self._wait_until_loaded(channel, process)
            if message is None or message[0] != "ready":
                code = await process.wait()
                reason = message[1] if message else f"worker exited with code {code} while loading"
                self._fail(worker, str(reason))
                return None
            worker.load_seconds = time.monotonic() - spawned  # interpreter, torch and model
            self.metrics.worker_loaded(
                worker_name=f"{self.name}-{worker.index}", seconds=worker.load_seconds
            )
            worker.state = "READY"
            if self.status == "LOADING":
                self.status = "READY"
            process.on_exit(_interrupt_if_idle(worker, asyncio.current_task()))
            while True:
                try:
                    batch = await self.queue.take(others_busy=self._others_busy)
                except asyncio.CancelledError:
                    if process.returncode is None:
                        raise  # the server is stopping
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    worker.state = "DEAD"
                    return CRASHED
                worker.state = "BUSY"
                if ended := await self._dispatch(batch, channel=channel, process=process):
                    worker.state = "DEAD"
                    return ended
                worker.state = "READY"
        finally:
            channel.close()
            await process.reap()

    async def _wait_until_loaded(
        self, channel: AsyncChannel, process: WorkerProcess
    ) -> tuple[Any, ...] | None:
        """The worker's first message, or a failure once `startupTimeout` has passed."""
        limit = self.settings.startup_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await channel.receive()
        except TimeoutError:
            process.kill()
            return ("failed", f"the model did not load within {limit:g} s (startupTimeout)")

    async def _dispatch(
        self, batch: list[Job], *, channel: AsyncChannel, process: WorkerProcess
    ) -> str | None:
        """Sends one batch and delivers its answers; returns why the worker ended, if it did."""
        now = time.monotonic()
        for job in batch:
            job.dispatched = now
        self._batch_ids += 1
        batch_id = self._batch_ids
        channel.send(("batch", batch_id, [job.request for job in batch]))
        self.metrics.batch_size.observe(len(batch))
        stuck_after = (
            min(job.enqueued for job in batch)
            + self.settings.response_timeout_s
            + self._config.worker_grace_s
            - now
        )
        watchdog = asyncio.get_running_loop().call_later(stuck_after, process.kill)
        by_id = {job.request_id: job for job in batch}
        try:
            while (message := await channel.receive()) is not None:
                if message[0] == "chunk":
                    if (streaming := by_id.get(message[1])) is not None:
                        streaming.deliver_chunk(message[2])
                elif message[0] == "results" and message[1] == batch_id:
                    for job, result in zip(batch, message[2], strict=False):
                        job.deliver(result)
                    self.metrics.handler_records(message[3])
                    return RECYCLED_FOR_MEMORY if message[4] else None
        except asyncio.CancelledError:
            for job in batch:
                job.fail(ServingError(503, "ServiceUnavailable", "The server stopped"))
            raise
        finally:
            watchdog.cancel()
        code = await process.wait()
        detail = "killed after passing its response timeout" if code == -9 else f"exit {code}"
        for job in batch:
            job.fail(worker_died(self.name, detail))
        return CRASHED

    def _fail(self, worker: WorkerSlot, reason: str) -> None:
        worker.state = "FAILED"
        self.status = "FAILED"
        self.failure = reason
        log.error("model %s failed to load: %s", self.name, reason)
        self.queue.fail_all(
            ServingError(503, "ModelLoadFailed", f"Model {self.name!r} failed to load: {reason}")
        )


def _interrupt_if_idle(worker: WorkerSlot, task: asyncio.Task[Any] | None) -> Callable[[], None]:
    """Wakes a supervisor waiting for work when its worker dies, so the death is seen at once.

    A busy worker's death shows as the end of its channel instead.
    """

    def interrupt() -> None:
        if worker.state == "READY" and task is not None:
            task.cancel()

    return interrupt
