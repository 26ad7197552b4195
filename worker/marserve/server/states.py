"""The states a model and each of its worker slots go through, as the management API shows them.

They are `StrEnum`s, so the JSON the management API writes is the same text as ever and a
comparison with the plain string still holds.
"""

from __future__ import annotations

import enum


class ModelState(enum.StrEnum):
    """A model: loading its first worker, serving, unable to load, or shutting down."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    STOPPING = "STOPPING"


class WorkerState(enum.StrEnum):
    """One worker slot: its process loading the model, idle, on a batch, gone, or waiting to be
    restarted; FAILED when its model could not be loaded."""

    STARTING = "STARTING"
    READY = "READY"
    BUSY = "BUSY"
    DEAD = "DEAD"
    RESTARTING = "RESTARTING"
    FAILED = "FAILED"

    @property
    def serving(self) -> bool:
        """Whether a process of this slot has the model loaded (idle or on a batch)."""
        return self in (WorkerState.READY, WorkerState.BUSY)
