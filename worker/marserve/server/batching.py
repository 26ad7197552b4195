"""Per-model request queue and dynamic batching.

A worker that becomes idle takes whatever is queued at once, so a lone request never waits for
company. It waits for more only when the model is under load: the queue held more than one job
and the model's other workers are all busy, so holding a partial batch costs no idle capacity.
Even then it waits only while requests keep arriving at their recent pace, and never past
`maxBatchDelay` counted from the oldest job's arrival. With one worker, the time the worker
spends on a batch is the window in which the next one gathers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from marserve.inference_request import InferenceRequest
from marserve.results import PredictionResult

MIN_PATIENCE_S = 0.0003


class QueueFullError(Exception):
    """The model's queue is at `jobQueueSize`; the request is refused with 429."""


class Job:
    """One request travelling from an HTTP handler through the queue to a worker and back.

    `outcome` resolves with the first thing the worker says about this request: its final
    `PredictionResult`, or the first streamed chunk, after which `stream` carries the rest and
    then None, its end.
    """

    __slots__ = ("dispatched", "enqueued", "outcome", "request", "request_id", "stream")

    def __init__(
        self, *, request_id: str, request: InferenceRequest, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.request_id = request_id
        self.request = request
        self.enqueued = time.monotonic()
        self.dispatched = -1.0
        self.outcome: asyncio.Future[PredictionResult] = loop.create_future()
        self.stream: asyncio.Queue[PredictionResult | BaseException | None] | None = None

    @property
    def pending(self) -> bool:
        return not self.outcome.done()

    def deliver_chunk(self, result: PredictionResult) -> None:
        if self.stream is not None:
            self.stream.put_nowait(result)
        elif self.pending:
            self.stream = asyncio.Queue()
            self.outcome.set_result(result)

    def deliver(self, result: PredictionResult) -> None:
        if self.stream is not None:
            self.stream.put_nowait(result)
            self.stream.put_nowait(None)
        elif self.pending:
            self.outcome.set_result(result)

    def fail(self, error: BaseException) -> None:
        if self.stream is not None:
            self.stream.put_nowait(error)
        elif self.pending:
            self.outcome.set_exception(error)

    def rest(self) -> AsyncIterator[PredictionResult] | None:
        """The results after the first when the answer is streamed; None when it is one result."""
        return None if self.stream is None else _stream_results(self.stream)


async def _stream_results(
    stream: asyncio.Queue[PredictionResult | BaseException | None],
) -> AsyncIterator[PredictionResult]:
    """Yields a stream's results up to its end; a failure mid-stream is raised where it came."""
    while (item := await stream.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


@dataclass(slots=True)
class Reply:
    """A model's answer to one request, the one shape every route receives from the scheduler.

    `first` is the whole answer, or a streamed answer's first chunk; then `rest` yields the
    following chunks and the final result, and raises the error that cut the stream short.
    """

    first: PredictionResult
    rest: AsyncIterator[PredictionResult] | None

    async def results(self) -> AsyncIterator[PredictionResult]:
        """Every result in order: the first, then a streamed answer's following chunks."""
        yield self.first
        if self.rest is not None:
            async for result in self.rest:
                yield result


class DeadlineSweep:
    """Fails requests still unanswered at the model's response timeout (504) with one timer per
    model instead of one per request.

    Every request of a model has the same timeout, so deadlines come in arrival order: the timer
    waits for the oldest unanswered request, and answered ones are dropped from the front as new
    ones arrive, which keeps the deque about as long as the number of requests in flight.
    """

    def __init__(self, *, timeout_s: float, expired: Callable[[], BaseException]) -> None:
        self.timeout_s = timeout_s
        self._expired = expired
        self._jobs: deque[Job] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Job) -> None:
        jobs = self._jobs
        while jobs and not jobs[0].pending:
            jobs.popleft()
        jobs.append(job)
        if self._timer is None:
            self._arm(jobs[0])

    def _arm(self, oldest: Job) -> None:
        delay = oldest.enqueued + self.timeout_s - time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        jobs = self._jobs
        now = time.monotonic()
        while jobs and (not jobs[0].pending or jobs[0].enqueued + self.timeout_s <= now):
            job = jobs.popleft()
            if job.pending:
                job.fail(self._expired())
        if jobs:
            self._arm(jobs[0])


class ModelQueue:
    """A bounded FIFO of jobs shared by a model's workers."""

    def __init__(self, *, capacity: int, batch_size: int, max_batch_delay_s: float) -> None:
        self.capacity = capacity
        self.batch_size = batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self._jobs: deque[Job] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_arrival = 0.0
        self._arrival_gap = max_batch_delay_s  # moving average of the gaps inside bursts
        self._filling = 0  # workers waiting for a partial batch to fill

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: Job) -> None:
        if len(self._jobs) >= self.capacity:
            raise QueueFullError
        if self._jobs or self._filling:  # a gap inside a burst, not the pause before one
            gap = min(job.enqueued - self._last_arrival, self.max_batch_delay_s)
            self._arrival_gap += (gap - self._arrival_gap) * 0.25
        self._last_arrival = job.enqueued
        self._jobs.append(job)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def fail_all(self, error: BaseException) -> None:
        while self._jobs:
            self._jobs.popleft().fail(error)

    def requeue(self, batch: Sequence[Job]) -> None:
        """Puts jobs taken by a worker that will not run them back at the head of the queue, in
        their order, and wakes another worker for them."""
        self._jobs.extendleft(reversed(batch))
        self._wake_one()

    def take_ready(self, *, others_busy: Callable[[], bool]) -> list[Job] | None:
        """The batch `take` would return without waiting, or None where it would wait.

        A worker that finishes a batch while requests are queued takes the next one here, in the
        same step of the event loop: going through a task and `asyncio.wait` costs the worker
        two more loop iterations of idle time per batch, which at c=64 with one worker was a
        third of its throughput.
        """
        if not self._jobs:
            return None
        partial = len(self._jobs) < self.batch_size
        if partial and self.max_batch_delay_s > 0 and self._under_load(others_busy):
            return None  # a partial batch under load waits to fill, in `take`
        return self._pop_live(self.batch_size) or None

    def _under_load(self, others_busy: Callable[[], bool]) -> bool:
        """More than one job is queued and every other worker is busy: a partial batch may wait."""
        return len(self._jobs) > 1 and others_busy()

    async def take(self, *, others_busy: Callable[[], bool]) -> list[Job]:
        """Waits for at least one live job and returns a batch of up to `batch_size`.

        `others_busy` tells whether every other worker of the model is busy right now.
        """
        while not self._jobs:
            await self._wait()
        loaded = self._under_load(others_busy)
        batch = self._pop_live(self.batch_size)
        if loaded and batch and len(batch) < self.batch_size and self.max_batch_delay_s > 0:
            deadline = batch[0].enqueued + self.max_batch_delay_s
            while len(batch) < self.batch_size and (remaining := deadline - time.monotonic()) > 0:
                if not self._jobs:
                    patience = max(2 * self._arrival_gap, MIN_PATIENCE_S)
                    self._filling += 1
                    try:
                        async with asyncio.timeout(min(remaining, patience)):
                            await self._wait()
                    except TimeoutError:
                        break
                    except asyncio.CancelledError:  # the worker is gone: others take these
                        self.requeue(batch)
                        raise
                    finally:
                        self._filling -= 1
                batch += self._pop_live(self.batch_size - len(batch))
        return batch if batch else await self.take(others_busy=others_busy)

    async def _wait(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken and cancelled at once: pass the wake-up on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()

    def _pop_live(self, limit: int) -> list[Job]:
        batch: list[Job] = []
        while self._jobs and len(batch) < limit:
            job = self._jobs.popleft()
            if job.pending:
                batch.append(job)
        return batch
