"""Reading batching from each server's own /metrics, the same way for both.

Every batch the bench handler runs adds one to its `BatchesHandled` counter and its size to
`RequestsHandled`; average batch size is their ratio over a load point. Requests a server refused
(queue full) never reach the handler, so they do not count. marserve's native
`marserve_batch_size` histogram is the fallback when the handler counters are missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

MODEL_LABELS = ("model_name", "ModelName", "model")
REQUESTS = ("RequestsHandled", "RequestsHandled_total")
BATCHES = ("BatchesHandled", "BatchesHandled_total")
NATIVE_BATCH_SUM = ("marserve_batch_size_sum",)
NATIVE_BATCH_COUNT = ("marserve_batch_size_count",)


@dataclass(frozen=True)
class BatchCounters:
    """Cumulative counts at one moment; subtract two to get a load point's batching."""

    requests: float
    batches: float
    native_requests: float
    native_batches: float

    def average_batch_size(self, since: BatchCounters) -> float | None:
        batches = self.batches - since.batches
        if batches > 0:
            return (self.requests - since.requests) / batches
        native_batches = self.native_batches - since.native_batches
        if native_batches > 0:
            return (self.native_requests - since.native_requests) / native_batches
        return None


def _total(
    samples: Iterable[tuple[str, dict[str, str], float]], names: Iterable[str], *, model: str
) -> float:
    wanted = set(names)
    total = 0.0
    for name, labels, value in samples:
        model_label = next((labels[key] for key in MODEL_LABELS if key in labels), model)
        if name in wanted and model_label == model:
            total += value
    return total


def batch_counters(metrics_text: str, *, model: str) -> BatchCounters:
    samples = [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    ]
    return BatchCounters(
        requests=_total(samples, REQUESTS, model=model),
        batches=_total(samples, BATCHES, model=model),
        native_requests=_total(samples, NATIVE_BATCH_SUM, model=model),
        native_batches=_total(samples, NATIVE_BATCH_COUNT, model=model),
    )
