"""Per-request metrics kept as plain numbers and turned into Prometheus families at scrape time.

A prometheus_client child takes a lock and walks its buckets on every `inc` or `observe`, several
microseconds per request; these tallies are attributes and a list the event loop updates (it is
the only writer), and `collect` renders them exactly as prometheus_client's Counter and Histogram
do: the same names, labels, `le` strings, `_count`, `_sum` and `_created` samples.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from marserve import contract

# prometheus_client's own switch for the `_created` series.
WITH_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "").lower() not in {
    "true",
    "1",
    "t",
}


class CounterTally:
    """One labelled counter's value."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class HistogramTally:
    """One labelled histogram's per-bucket counts (not cumulative; the last is +Inf) and sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class CounterFamily(Collector):
    """A counter family whose children are `CounterTally`s, one per label values."""

    def __init__(self, family: contract.MetricFamily) -> None:
        self.family = family
        self.children: dict[tuple[str, ...], CounterTally] = {}

    def child(self, *labels: str) -> CounterTally:
        tally = self.children.get(labels)
        if tally is None:
            tally = self.children[labels] = CounterTally()
        return tally

    def collect(self) -> Iterable[Metric]:
        name = self.family.name
        metric = Metric(name, self.family.documentation, "counter")
        for values, tally in list(self.children.items()):
            labels = dict(zip(self.family.labels, values, strict=True))
            metric.add_sample(f"{name}_total", labels, tally.value)
            if WITH_CREATED:
                metric.add_sample(f"{name}_created", labels, tally.created)
        yield metric


class HistogramFamily(Collector):
    """A histogram family whose children are `HistogramTally`s, one per label values."""

    def __init__(self, family: contract.MetricFamily, *, buckets: Sequence[float]) -> None:
        self.family = family
        self.bounds = (*buckets, float("inf"))
        self._le = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        self.children: dict[tuple[str, ...], HistogramTally] = {}

    def child(self, *labels: str) -> HistogramTally:
        tally = self.children.get(labels)
        if tally is None:
            tally = self.children[labels] = HistogramTally(self.bounds[:-1])
        return tally

    def collect(self) -> Iterable[Metric]:
        name = self.family.name
        metric = Metric(name, self.family.documentation, "histogram")
        for values, tally in list(self.children.items()):
            labels = dict(zip(self.family.labels, values, strict=True))
            total = 0.0
            for le, count in zip(self._le, tally.counts, strict=True):
                total += count
                metric.add_sample(f"{name}_bucket", {**labels, "le": le}, total)
            metric.add_sample(f"{name}_count", labels, total)
            metric.add_sample(f"{name}_sum", labels, tally.sum)
            if WITH_CREATED:
                metric.add_sample(f"{name}_created", labels, tally.created)
        yield metric
