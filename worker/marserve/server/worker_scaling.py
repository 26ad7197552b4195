"""When a model runs more workers than `minWorkers`, up to `maxWorkers`, and when it goes back.

The scheduler samples its model every `CHECK_INTERVAL_S`. Requests queued while no worker is idle
(and none is already starting) for `SCALE_UP_AFTER_S` add one worker: a burst shorter than that
is absorbed by the queue and batching, and a fork plus a model load is not worth paying for it.
A worker above `minWorkers` is retired once every sample for the server's `worker_idle_s` found
a worker idle: the model has not needed all of them for that long.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from marserve.server.states import WorkerState

CHECK_INTERVAL_S = 0.1
SCALE_UP_AFTER_S = 0.5


class Scaling(enum.Enum):
    """What the policy asks of the scheduler after one sample."""

    KEEP = "keep"
    ADD = "add"
    RETIRE = "retire"


class ScalingPolicy:
    """Turns samples of one model's queue and worker states into add / retire decisions."""

    def __init__(
        self,
        *,
        min_workers: int,
        max_workers: int,
        idle_after_s: float,
        now: float,
        scale_up_after_s: float = SCALE_UP_AFTER_S,
    ) -> None:
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.idle_after_s = idle_after_s
        self.scale_up_after_s = scale_up_after_s
        self._waiting_since: float | None = None
        self._last_saturated = now

    def decide(self, *, now: float, queued: int, states: Sequence[WorkerState]) -> Scaling:
        """One sample: the number of queued requests and the state of every worker slot."""
        idle = sum(state is WorkerState.READY for state in states)
        settling = any(not state.serving for state in states)
        if idle == 0:
            self._last_saturated = now
        if queued and idle == 0 and not settling and len(states) < self.max_workers:
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since >= self.scale_up_after_s:
                self._waiting_since = None
                return Scaling.ADD
            return Scaling.KEEP
        self._waiting_since = None
        if len(states) > self.min_workers and now - self._last_saturated >= self.idle_after_s:
            self._last_saturated = now
            return Scaling.RETIRE
        return Scaling.KEEP
