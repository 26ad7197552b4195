"""How many intra-op threads each worker's torch gets when the user has not chosen.

torch starts one OpenMP thread per core it can see. With a front end, several workers and, in a
pod, a CPU quota smaller than the node, that is more threads than cores: a parallel region then
waits for a thread that is not running, and spins. Each worker gets an equal share of the CPUs
this process may use (`loading.cpu.available_cpus`: affinity and cgroup v2 or v1 quota).

Whether one of them is left to the front end depends on the model. The front end spends about
60-100 µs of CPU per request; a small model answers a batch of eight in a millisecond or two, so
the front end needs a core of its own (on two cores, taking it back cost the CNN a quarter of its
throughput). A ResNet-18 batch takes hundreds of milliseconds, during which the front end needs
a few percent of a core, so a kept-back core is a core idle (on two cores it halved the ResNet's
throughput). A worker therefore starts with the share that leaves the front end a core and moves
to the whole share while its batches take longer than `LONG_BATCH_S` on average, and back once
they take less than half of it. OMP_NUM_THREADS or MKL_NUM_THREADS in the environment win.

Standard library only: the worker imports it before torch, and the bench's peers use the same
rule (bench/peers/peer_model.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

USER_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# At 60-100 µs of front-end CPU per request, a batch of eight longer than this leaves the front
# end under 5% of a core's work: the worker may take the front end's core.
LONG_BATCH_S = 0.02
_SMOOTHING = 0.3  # weight of the newest batch in the moving average of batch times


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    """A worker's thread counts: `light` leaves the front end a core, `heavy` does not."""

    light: int
    heavy: int


def thread_plan(*, workers: int, cpus: int, environ: Mapping[str, str]) -> ThreadPlan | None:
    """Each worker's share of the CPUs, or None when the environment already says (torch reads
    it itself)."""
    if any(environ.get(name) for name in USER_SETTINGS):
        return None
    workers = max(1, workers)
    return ThreadPlan(light=max(1, (cpus - 1) // workers), heavy=max(1, cpus // workers))


class ThreadGovernor:
    """Moves one worker between its plan's thread counts as the time of its batches says."""

    def __init__(self, plan: ThreadPlan, set_threads: Callable[[int], None]) -> None:
        self._plan = plan
        self._set_threads = set_threads
        self._average_s: float | None = None
        self.threads = plan.light
        set_threads(plan.light)

    def batch_took(self, seconds: float) -> None:
        average = self._average_s
        average = seconds if average is None else average + (seconds - average) * _SMOOTHING
        self._average_s = average
        if average > LONG_BATCH_S:
            wanted = self._plan.heavy
        elif average < LONG_BATCH_S / 2:
            wanted = self._plan.light
        else:
            return
        if wanted != self.threads:
            self.threads = wanted
            self._set_threads(wanted)
