"""How many intra-op threads each worker's torch gets when the user has not chosen.

torch starts one OpenMP thread per core it can see. With a front end, several workers and, in a
pod, a CPU quota smaller than the node, that is more threads than cores: a parallel region then
waits for a thread that is not running, and spins. Each worker gets an equal share of the CPUs
this process may use (`loading.cpu.available_cpus`: affinity and cgroup v2 or v1 quota), one kept
for the front end; OMP_NUM_THREADS or MKL_NUM_THREADS in the environment win.
"""

from __future__ import annotations

from collections.abc import Mapping

USER_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def intra_op_threads(*, workers: int, cpus: int, environ: Mapping[str, str]) -> int | None:
    """Threads per worker, or None when the environment already says (torch reads it itself)."""
    if any(environ.get(name) for name in USER_SETTINGS):
        return None
    return max(1, (cpus - 1) // max(1, workers))
