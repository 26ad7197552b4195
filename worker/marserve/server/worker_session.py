"""One worker session: a worker process in its slot from fork to exit.

The process loads the model, then takes batches from the model's queue until it exits, is retired
or reports that it passed its memory limit. Each batch's answers go to its jobs as they arrive; a
process that dies or outlives its batch's deadline (plus `worker_grace_s`) fails the batch with 503.
How a session ended is returned, never acted on here: restarting and failing the model belong to
the pool (see `worker_pool.py`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marserve.loading.cpu import available_cpus
from marserve.server import cpu_threads
from marserve.server.batching import Job, ModelQueue
from marserve.server.config import ServerConfig
from marserve.server.errors import ServingError, worker_died
from marserve.server.ipc import AsyncChannel, Unreadable
from marserve.server.messages import (
    FROM_WORKER,
    BatchResults,
    Chunk,
    FromWorker,
    Loaded,
    LoadFailed,
    RunBatch,
    Stop,
    ToWorker,
    WorkerSpec,
)
from marserve.server.metrics import ModelMetrics
from marserve.server.model_sources import ModelSource
from marserve.server.states import WorkerState
from marserve.server.worker_process import WorkerProcess

log = logging.getLogger("marserve.server.worker_session")

FrontEndChannel = AsyncChannel[ToWorker, FromWorker]


@dataclass(eq=False)
class WorkerSlot:
    """What the management API shows about one worker slot; `retire` asks its process to go."""

    index: int
    gpu_id: int | None
    state: WorkerState = WorkerState.STARTING
    pid: int | None = None
    started_at: float = field(default_factory=time.time)
    restarts: int = 0
    load_seconds: float | None = None
    retire: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class Ended(enum.Enum):
    """Why a session that had loaded the model ended; the value is what the logs say."""

    CRASHED = "crash"
    RECYCLED_FOR_MEMORY = "memory"
    RETIRED = "retired"


@dataclass(frozen=True)
class CannotLoad:
    """A session whose process could not be started or could not load the model, and why."""

    reason: str


class WorkerSessions:
    """Runs the sessions of one model's slots, one at a time per slot, against its queue."""

    def __init__(
        self,
        *,
        source: ModelSource,
        config: ServerConfig,
        queue: ModelQueue,
        metrics: ModelMetrics,
        others_busy: Callable[[], bool],
        loaded: Callable[[], None],
    ) -> None:
        self._source = source
        self._settings = source.settings
        self._config = config
        self._queue = queue
        self._metrics = metrics
        self._others_busy = others_busy
        self._loaded = loaded
        self._batch_ids = 0

    @property
    def _name(self) -> str:
        return self._source.name

    def _spec(self, worker: WorkerSlot) -> WorkerSpec:
        return WorkerSpec(
            model_dir=str(self._source.model_dir),
            model_name=self._name,
            handler=self._config.handler,
            gpu_id=worker.gpu_id,
            batch_size=self._settings.batch_size,
            yaml_config=self._source.yaml_config,
            threads=cpu_threads.thread_plan(
                workers=self._settings.min_workers,
                cpus=available_cpus(),
                environ=os.environ,
            ),
            log_format=self._config.log_format,
            memory_limit_mb=self._settings.max_worker_memory_mb,
        )

    async def run(self, worker: WorkerSlot) -> Ended | CannotLoad:
        """Runs one process in `worker`'s slot to its end and says how it ended."""
        parent, child = socket.socketpair()
        spawned = time.monotonic()
        try:
            process = await WorkerProcess.start(sock=child, spec=self._spec(worker))
        except Exception as error:  # the fork server could not start or fork
            parent.close()
            return CannotLoad(f"cannot start a worker process: {error}")
        finally:
            child.close()
        channel: FrontEndChannel = await AsyncChannel.open(parent, accepts=FROM_WORKER)
        worker.pid, worker.state, worker.started_at = process.pid, WorkerState.STARTING, time.time()
        try:
            failure = await self._wait_until_loaded(worker, channel=channel, process=process)
            if failure is not None:
                return CannotLoad(failure)
            worker.load_seconds = time.monotonic() - spawned  # interpreter, torch and model
            self._metrics.worker_loaded(
                worker_name=f"{self._name}-{worker.index}", seconds=worker.load_seconds
            )
            self._loaded()
            return await self._serve(worker, channel=channel, process=process)
        finally:
            channel.close()
            await process.reap()

    async def _wait_until_loaded(
        self, worker: WorkerSlot, *, channel: FrontEndChannel, process: WorkerProcess
    ) -> str | None:
        """None once the worker has loaded the model, else why it did not: its own reason, its
        exit, or `startupTimeout` passing."""
        limit = self._settings.startup_timeout_s
        try:
            async with asyncio.timeout(limit):
                while (message := await channel.receive()) is not None:
                    if isinstance(message, Loaded):
                        return None
                    if isinstance(message, LoadFailed):
                        return message.reason
                    self._reject(worker, message)
                code = await process.wait()
                return f"worker exited with code {code} while loading"
        except TimeoutError:
            process.kill()
            return f"the model did not load within {limit:g} s (startupTimeout)"

    async def _serve(
        self, worker: WorkerSlot, *, channel: FrontEndChannel, process: WorkerProcess
    ) -> Ended:
        """Feeds batches to a loaded worker until its process ends or the worker is retired."""
        retiring = asyncio.create_task(worker.retire.wait())
        try:
            while not worker.retire.is_set():
                worker.state = WorkerState.READY
                batch = await self._next_batch(exited=process.exited(), retiring=retiring)
                if batch is None:
                    break
                worker.state = WorkerState.BUSY
                if ended := await self._dispatch(
                    batch, worker=worker, channel=channel, process=process
                ):
                    worker.state = WorkerState.DEAD
                    return ended
        finally:
            retiring.cancel()
        if worker.retire.is_set():
            if not process.exited().done():
                channel.send(Stop())
            return Ended.RETIRED
        worker.state = WorkerState.DEAD
        return Ended.CRASHED

    async def _next_batch(
        self, *, exited: asyncio.Future[None], retiring: asyncio.Task[Any]
    ) -> list[Job] | None:
        """The next batch, or None when the process exits or the worker is retired first."""
        if not exited.done() and not retiring.done():
            ready = self._queue.take_ready(others_busy=self._others_busy)
            if ready is not None:
                return ready
        taking = asyncio.create_task(self._queue.take(others_busy=self._others_busy))
        try:
            await asyncio.wait((taking, exited, retiring), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is stopping
            await self._abandon(taking)
            raise
        if not taking.done() or exited.done():
            await self._abandon(taking)
            return None
        return taking.result()

    async def _abandon(self, taking: asyncio.Task[list[Job]]) -> None:
        """Stops a take no longer wanted; a batch it already holds goes back to the queue."""
        taking.cancel()
        await asyncio.wait((taking,))
        if not taking.cancelled() and taking.exception() is None:
            self._queue.requeue(taking.result())

    async def _dispatch(
        self,
        batch: list[Job],
        *,
        worker: WorkerSlot,
        channel: FrontEndChannel,
        process: WorkerProcess,
    ) -> Ended | None:
        """Sends one batch and delivers its answers; returns why the worker ended, if it did."""
        now = time.monotonic()
        for job in batch:
            job.dispatched = now
        self._batch_ids += 1
        batch_id = self._batch_ids
        channel.send(RunBatch(batch_id, [job.request for job in batch]))
        self._metrics.batch_size.observe(len(batch))
        stuck_after = (
            min(job.enqueued for job in batch)
            + self._settings.response_timeout_s
            + self._config.worker_grace_s
            - now
        )
        watchdog = asyncio.get_running_loop().call_later(stuck_after, process.kill)
        by_id = {job.request_id: job for job in batch}
        try:
            while (message := await channel.receive()) is not None:
                if isinstance(message, Chunk) and message.request_id in by_id:
                    by_id[message.request_id].deliver_chunk(message.result)
                elif isinstance(message, BatchResults) and message.batch_id == batch_id:
                    for job, result in zip(batch, message.results, strict=False):
                        job.deliver(result)
                    self._metrics.handler_records(message.metrics)
                    return Ended.RECYCLED_FOR_MEMORY if message.recycle else None
                else:
                    self._reject(worker, message)
        except asyncio.CancelledError:
            for job in batch:
                job.fail(ServingError(503, "ServiceUnavailable", "The server stopped"))
            raise
        finally:
            watchdog.cancel()
        code = await process.wait()
        detail = "killed after passing its response timeout" if code == -9 else f"exit {code}"
        for job in batch:
            job.fail(worker_died(self._name, detail))
        return Ended.CRASHED

    def _reject(self, worker: WorkerSlot, message: FromWorker | Unreadable) -> None:
        """Counts and logs a message the front end cannot use, then carries on reading.

        Frames are length-prefixed, so one bad frame leaves the next one readable: the worker is
        not ended for it. A batch whose results never come is ended by its watchdog, as a stuck
        batch is.
        """
        self._metrics.rejected_messages.inc()
        if isinstance(message, Unreadable):
            what = message.reason
        elif isinstance(message, BatchResults):
            what = f"results for batch {message.batch_id}, which it is not running"
        elif isinstance(message, Chunk):
            what = f"a chunk for request {message.request_id!r}, which it is not running"
        else:
            what = f"{type(message).__name__} out of turn"
        log.error("worker %s-%d sent a message that is skipped: %s", self._name, worker.index, what)
