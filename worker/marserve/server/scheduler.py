"""Worker processes of one model: start, feed batches, watch over, restart with back-off.

Each worker process loads its own copy of the model. A worker that dies fails its in-flight batch
with 503 and is restarted after a capped exponential back-off; a worker that cannot load the model
marks the model FAILED with the reason, because restarting a broken archive forever helps no one.
A worker past its memory limit says so with its last results and is replaced at once: a planned
recycle, neither a failure nor a reason to back off. Between `minWorkers` and `maxWorkers`, workers
are added under sustained load and retired when idle (see `worker_scaling.py`).

A supervisor waits for "a batch is ready", "the process exited" and "retire this worker" together;
cancelling it means only that the server is stopping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from marserve.inference_request import InferenceRequest
from marserve.loading.cpu import available_cpus
from marserve.server import cpu_threads
from marserve.server.batching import DeadlineSweep, Job, ModelQueue, QueueFullError, Reply
from marserve.server.config import ServerConfig
from marserve.server.devices import gpu_for_worker, visible_gpus
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
from marserve.server.states import ModelState, WorkerState
from marserve.server.worker_process import WorkerProcess
from marserve.server.worker_scaling import CHECK_INTERVAL_S, Scaling, ScalingPolicy

log = logging.getLogger("marserve.server.scheduler")

BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 30.0
HEALTHY_UPTIME_S = 60.0
CRASHED = "crash"
RECYCLED_FOR_MEMORY = "memory"
RETIRED = "retired"

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


class ModelScheduler:
    """One model's queue and worker processes; routes hand it requests through `infer`."""

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
        self._visible_gpus = visible_gpus(os.environ)
        self.workers = [self._slot(index) for index in range(self.settings.min_workers)]
        self.status = ModelState.LOADING
        self.failure: str | None = None
        self._inflight = 0
        self.metrics.watch(
            inflight=lambda: self._inflight,
            queued=lambda: len(self.queue),
            workers=lambda: sum(w.state.serving for w in self.workers),
        )
        self._deadlines = DeadlineSweep(
            timeout_s=self.settings.response_timeout_s, expired=self._timed_out
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._batch_ids = 0

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def ready(self) -> bool:
        return self.status == ModelState.READY and any(w.state.serving for w in self.workers)

    def start(self) -> None:
        if self.source.failure is not None:
            for worker in self.workers:
                self._fail(worker, self.source.failure)
            return
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in self.workers]
        if self.settings.max_workers > self.settings.min_workers:
            self._tasks.append(asyncio.create_task(self._scale()))

    def _slot(self, index: int) -> WorkerSlot:
        """A new worker slot; its index chooses its GPU, as it always has for the first ones."""
        gpu_id = gpu_for_worker(
            index,
            device_ids=self.settings.device_ids,
            visible=self._visible_gpus,
            device_type=self.settings.device_type,
        )
        return WorkerSlot(index=index, gpu_id=gpu_id)

    async def infer(self, request: InferenceRequest) -> Reply:
        """Queues one request and waits for its answer, or raises a ServingError (504 at deadline).

        The request counts as in flight and holds a deadline until its first result; its metrics
        are recorded once whatever happens, a refusal at the queue (429, 503) included.
        """
        job = Job(request_id=request.request_id, request=request, loop=asyncio.get_running_loop())
        try:
            self.submit(job)
        except ServingError as error:
            self.metrics.request_done(code=error.status, total_s=0.0, queue_s=-1.0)
            raise
        self._inflight += 1
        self._deadlines.add(job)
        code = 499  # the client went away before an answer
        try:
            first = await job.outcome
            code = first.status
            return Reply(first, job.rest())
        except ServingError as error:
            code = error.status
            raise
        finally:
            self._inflight -= 1
            queue_s = job.dispatched - job.enqueued if job.dispatched >= 0 else -1.0
            total_s = time.monotonic() - job.enqueued
            self.metrics.request_done(code=code, total_s=total_s, queue_s=queue_s)

    def submit(self, job: Job) -> None:
        """Queues a job or raises the ServingError that explains why it cannot be."""
        if self.status is ModelState.FAILED:
            raise ServingError(
                503, "ModelLoadFailed", f"Model {self.name!r} failed to load: {self.failure}"
            )
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
        busy = sum(w.state is WorkerState.BUSY for w in self.workers)
        return busy >= len(self.workers) - 1 > 0

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
            if reason == RETIRED:
                self.workers.remove(worker)
                log.info("worker %s-%d retired after idling", self.name, worker.index)
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
            worker.state = WorkerState.RESTARTING
            log.warning(
                "worker %s-%d ended (%s); restarting in %.2fs",
                self.name, worker.index, reason, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _scale(self) -> None:
        """Samples the model's load and adds or retires workers between min and max workers."""
        policy = ScalingPolicy(
            min_workers=self.settings.min_workers,
            max_workers=self.settings.max_workers,
            idle_after_s=self._config.worker_idle_s,
            now=time.monotonic(),
        )
        while self.status in (ModelState.LOADING, ModelState.READY):
            await asyncio.sleep(CHECK_INTERVAL_S)
            decision = policy.decide(
                now=time.monotonic(),
                queued=len(self.queue),
                states=[w.state for w in self.workers],
            )
            if decision is Scaling.ADD:
                self._add_worker()
            elif decision is Scaling.RETIRE:
                self._retire_idle_worker()

    def _add_worker(self) -> None:
        taken = {w.index for w in self.workers}
        worker = self._slot(next(i for i in range(len(taken) + 1) if i not in taken))
        self.workers.append(worker)
        self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks.append(asyncio.create_task(self._supervise(worker)))
        log.info("model %s is busy: starting worker %s-%d", self.name, self.name, worker.index)

    def _retire_idle_worker(self) -> None:
        """Asks the idle worker with the highest index to go; the policy saw at least one idle."""
        idle = [w for w in self.workers if w.state is WorkerState.READY and not w.retire.is_set()]
        if idle:
            max(idle, key=lambda w: w.index).retire.set()

    def _spec(self, worker: WorkerSlot) -> WorkerSpec:
        return WorkerSpec(
            model_dir=str(self.source.model_dir),
            model_name=self.name,
            handler=self._config.handler,
            gpu_id=worker.gpu_id,
            batch_size=self.settings.batch_size,
            yaml_config=self.source.yaml_config,
            intra_op_threads=cpu_threads.intra_op_threads(
                workers=self.settings.min_workers,
                cpus=available_cpus(),
                environ=os.environ,
            ),
            log_format=self._config.log_format,
            memory_limit_mb=self.settings.max_worker_memory_mb,
        )

    async def _run_process(self, worker: WorkerSlot) -> str | None:
        """Runs one worker process to its end; returns why it ended, or None to stop the slot."""
        parent, child = socket.socketpair()
        spawned = time.monotonic()
        try:
            process = await WorkerProcess.start(sock=child, spec=self._spec(worker))
        except Exception as error:  # the fork server could not start or fork
            parent.close()
            self._fail(worker, f"cannot start a worker process: {error}")
            return None
        finally:
            child.close()
        channel: FrontEndChannel = await AsyncChannel.open(parent, accepts=FROM_WORKER)
        worker.pid, worker.state, worker.started_at = process.pid, WorkerState.STARTING, time.time()
        try:
            failure = await self._wait_until_loaded(worker, channel=channel, process=process)
            if failure is not None:
                self._fail(worker, failure)
                return None
            worker.load_seconds = time.monotonic() - spawned  # interpreter, torch and model
            self.metrics.worker_loaded(
                worker_name=f"{self.name}-{worker.index}", seconds=worker.load_seconds
            )
            if self.status == ModelState.LOADING:
                self.status = ModelState.READY
            return await self._serve(worker, channel=channel, process=process)
        finally:
            channel.close()
            await process.reap()

    async def _wait_until_loaded(
        self, worker: WorkerSlot, *, channel: FrontEndChannel, process: WorkerProcess
    ) -> str | None:
        """None once the worker has loaded the model, else why it did not: its own reason, its
        exit, or `startupTimeout` passing."""
        limit = self.settings.startup_timeout_s
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
    ) -> str:
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
            return RETIRED
        worker.state = WorkerState.DEAD
        return CRASHED

    async def _next_batch(
        self, *, exited: asyncio.Future[None], retiring: asyncio.Task[Any]
    ) -> list[Job] | None:
        """The next batch, or None when the process exits or the worker is retired first."""
        taking = asyncio.create_task(self.queue.take(others_busy=self._others_busy))
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
            self.queue.requeue(taking.result())

    async def _dispatch(
        self,
        batch: list[Job],
        *,
        worker: WorkerSlot,
        channel: FrontEndChannel,
        process: WorkerProcess,
    ) -> str | None:
        """Sends one batch and delivers its answers; returns why the worker ended, if it did."""
        now = time.monotonic()
        for job in batch:
            job.dispatched = now
        self._batch_ids += 1
        batch_id = self._batch_ids
        channel.send(RunBatch(batch_id, [job.request for job in batch]))
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
                if isinstance(message, Chunk) and message.request_id in by_id:
                    by_id[message.request_id].deliver_chunk(message.result)
                elif isinstance(message, BatchResults) and message.batch_id == batch_id:
                    for job, result in zip(batch, message.results, strict=False):
                        job.deliver(result)
                    self.metrics.handler_records(message.metrics)
                    return RECYCLED_FOR_MEMORY if message.recycle else None
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
            job.fail(worker_died(self.name, detail))
        return CRASHED

    def _reject(self, worker: WorkerSlot, message: FromWorker | Unreadable) -> None:
        """Counts and logs a message the front end cannot use, then carries on reading.

        Frames are length-prefixed, so one bad frame leaves the next one readable: the worker is
        not ended for it. A batch whose results never come is ended by its watchdog, as a stuck
        batch is.
        """
        self.metrics.rejected_messages.inc()
        if isinstance(message, Unreadable):
            what = message.reason
        elif isinstance(message, BatchResults):
            what = f"results for batch {message.batch_id}, which it is not running"
        elif isinstance(message, Chunk):
            what = f"a chunk for request {message.request_id!r}, which it is not running"
        else:
            what = f"{type(message).__name__} out of turn"
        log.error("worker %s-%d sent a message that is skipped: %s", self.name, worker.index, what)

    def _fail(self, worker: WorkerSlot, reason: str) -> None:
        worker.state = WorkerState.FAILED
        self.status = ModelState.FAILED
        self.failure = reason
        log.error("model %s failed to load: %s", self.name, reason)
        self.queue.fail_all(
            ServingError(503, "ModelLoadFailed", f"Model {self.name!r} failed to load: {reason}")
        )
