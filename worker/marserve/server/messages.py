"""Every value that crosses between the front end and a worker process, one frozen type each.

Both ends are the same marserve install, so these travel pickled (see `ipc.py`); typing them
means a reader matches on a class, never on a tuple position, and a value of any other type is
refused as unreadable instead of raising an IndexError somewhere downstream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marserve.handler_metrics import MetricRecord
from marserve.inference_request import InferenceRequest
from marserve.results import PredictionResult
from marserve.server.cpu_threads import ThreadPlan
from marserve.wire import pickled_by_fields


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a forked worker needs to load its model and size itself, decided by the front end.

    `yaml_config` is the model YAML the front end already read for the model's settings, so the
    worker's handler sees the very same mapping without reading and parsing the file again.
    """

    model_dir: str
    model_name: str
    handler: str | None
    gpu_id: int | None
    batch_size: int
    yaml_config: Mapping[str, Any]
    threads: ThreadPlan | None
    log_format: str
    memory_limit_mb: int


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class RunBatch:
    """Front end → worker: predict these requests and answer with `BatchResults`."""

    batch_id: int
    requests: Sequence[InferenceRequest]


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Stop:
    """Front end → worker: exit cleanly; the worker is no longer wanted."""


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Loaded:
    """Worker → front end: the model is loaded and the worker takes batches."""


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class LoadFailed:
    """Worker → front end: the model could not be loaded, and why (the worker then exits)."""

    reason: str


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Chunk:
    """Worker → front end: one streamed part of a request's answer, ahead of the batch results."""

    request_id: str
    result: PredictionResult


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class BatchResults:
    """Worker → front end: a batch's answers in request order, the handler metrics recorded
    while computing them, and whether the worker exits now to give back its memory."""

    batch_id: int
    results: Sequence[PredictionResult]
    metrics: Sequence[MetricRecord]
    recycle: bool


ToWorker = RunBatch | Stop
FromWorker = Loaded | LoadFailed | Chunk | BatchResults
TO_WORKER: tuple[type[ToWorker], ...] = (RunBatch, Stop)
FROM_WORKER: tuple[type[FromWorker], ...] = (Loaded, LoadFailed, Chunk, BatchResults)
