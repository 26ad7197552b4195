"""The worker processes of one model: how many, and what happens when one ends.

Each slot runs one worker session after another (see `worker_session.py`). A worker that dies is
restarted after a capped exponential back-off; a worker that cannot load the model fails the
model with the reason, because restarting a broken archive forever helps no one. A worker past its
memory limit is replaced at once: a planned recycle, neither a failure nor a reason to back off.
Between `minWorkers` and `maxWorkers`, workers are added under sustained load and retired when
idle (see `worker_scaling.py`).

The pool never sets the model's state: it tells the scheduler, which owns it, that a worker has
loaded or that the model cannot load. Cancelling a supervisor means only that the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from marserve.server.batching import ModelQueue
from marserve.server.config import ServerConfig
from marserve.server.devices import gpu_for_worker, visible_gpus
from marserve.server.metrics import ModelMetrics
from marserve.server.model_sources import ModelSource
from marserve.server.states import WorkerState
from marserve.server.worker_scaling import CHECK_INTERVAL_S, Scaling, ScalingPolicy
from marserve.server.worker_session import CannotLoad, Ended, WorkerSessions, WorkerSlot

log = logging.getLogger("marserve.server.worker_pool")

BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 30.0
HEALTHY_UPTIME_S = 60.0


class WorkerPool:
    """One model's worker slots, each watched by a supervisor, and the scaling between them.

    `loaded` is called each time a worker has loaded the model, `failed` with the reason when the
    model cannot be loaded; after a failure the pool adds no more workers.
    """

    def __init__(
        self,
        *,
        source: ModelSource,
        config: ServerConfig,
        queue: ModelQueue,
        metrics: ModelMetrics,
        loaded: Callable[[], None],
        failed: Callable[[str], None],
    ) -> None:
        self._source = source
        self._settings = source.settings
        self._config = config
        self._queue = queue
        self._metrics = metrics
        self._failed = failed
        self._sessions = WorkerSessions(
            source=source,
            config=config,
            queue=queue,
            metrics=metrics,
            others_busy=self._others_busy,
            loaded=loaded,
        )
        self._visible_gpus = visible_gpus(os.environ)
        self.workers = [self._slot(index) for index in range(self._settings.min_workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._scaling: asyncio.Task[None] | None = None

    @property
    def _name(self) -> str:
        return self._source.name

    def serving(self) -> int:
        """How many workers have the model loaded, idle or on a batch."""
        return sum(w.state.serving for w in self.workers)

    def start(self) -> None:
        if self._source.failure is not None:
            for worker in self.workers:
                self._fail(worker, self._source.failure)
            return
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in self.workers]
        if self._settings.max_workers > self._settings.min_workers:
            self._scaling = asyncio.create_task(self._scale())
            self._tasks.append(self._scaling)

    async def stop(self) -> None:
        """Ends every supervisor; a session on a batch fails that batch with 503 as it ends."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{self._name}-{w.index}",
                "state": w.state,
                "pid": w.pid,
                "gpu": w.gpu_id,
                "startTime": w.started_at,
                "restarts": w.restarts,
                "loadSeconds": w.load_seconds,
            }
            for w in self.workers
        ]

    def _slot(self, index: int) -> WorkerSlot:
        """A new worker slot; its index chooses its GPU, as it always has for the first ones."""
        gpu_id = gpu_for_worker(
            index,
            device_ids=self._settings.device_ids,
            visible=self._visible_gpus,
            device_type=self._settings.device_type,
        )
        return WorkerSlot(index=index, gpu_id=gpu_id)

    def _others_busy(self) -> bool:
        """Whether every worker but the one asking is busy (the asking one is idle)."""
        busy = sum(w.state is WorkerState.BUSY for w in self.workers)
        return busy >= len(self.workers) - 1 > 0

    async def _supervise(self, worker: WorkerSlot) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                ended = await self._sessions.run(worker)
            except Exception as error:  # a supervisor bug must show, not leave a silent slot
                log.exception("supervisor of %s-%d failed", self._name, worker.index)
                self._fail(worker, f"worker supervision failed: {error!r}")
                return
            if isinstance(ended, CannotLoad):
                self._fail(worker, ended.reason)
                return
            if ended is Ended.RETIRED:
                self.workers.remove(worker)
                log.info("worker %s-%d retired after idling", self._name, worker.index)
                return
            if ended is Ended.RECYCLED_FOR_MEMORY:
                delay = 0.0
                self._metrics.memory_recycles.inc()
            else:
                failures = 0 if time.monotonic() - started > HEALTHY_UPTIME_S else failures
                delay = min(BACKOFF_FIRST_S * 2**failures, BACKOFF_CAP_S)
                failures += 1
                self._metrics.restarts.inc()
            worker.restarts += 1
            worker.state = WorkerState.RESTARTING
            log.warning(
                "worker %s-%d ended (%s); restarting in %.2fs",
                self._name, worker.index, ended.value, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _scale(self) -> None:
        """Samples the model's load and adds or retires workers between min and max workers."""
        policy = ScalingPolicy(
            min_workers=self._settings.min_workers,
            max_workers=self._settings.max_workers,
            idle_after_s=self._config.worker_idle_s,
            now=time.monotonic(),
        )
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            decision = policy.decide(
                now=time.monotonic(),
                queued=len(self._queue),
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
        log.info("model %s is busy: starting worker %s-%d", self._name, self._name, worker.index)

    def _retire_idle_worker(self) -> None:
        """Asks the idle worker with the highest index to go; the policy saw at least one idle."""
        idle = [w for w in self.workers if w.state is WorkerState.READY and not w.retire.is_set()]
        if idle:
            max(idle, key=lambda w: w.index).retire.set()

    def _fail(self, worker: WorkerSlot, reason: str) -> None:
        """Marks the slot FAILED, stops adding workers and reports the model's failure."""
        worker.state = WorkerState.FAILED
        if self._scaling is not None:
            self._scaling.cancel()
        self._failed(reason)
