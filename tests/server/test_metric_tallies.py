"""Per-request tallies render exactly as prometheus_client's Counter and Histogram would."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from marserve import contract
from marserve.server.metric_tallies import CounterFamily, HistogramFamily
from marserve.server.metrics import LATENCY_BUCKETS

# Bucket edges, values between them, and values past the last one.
OBSERVED = (0.0, 0.0005, 0.0007, 0.001, 0.003, 0.2, 1.0, 59.0, 60.0, 61.0, 1e9)


def without_created_values(text: bytes) -> bytes:
    """The `_created` samples keep their names and labels; their timestamps differ by run."""
    return re.sub(rb"(_created\{[^}]*\}) \S+", rb"\1 T", text)


def test_a_histogram_tally_renders_as_prometheus_client_does() -> None:
    family = contract.REQUEST_DURATION
    reference = CollectorRegistry()
    histogram = Histogram(
        family.name, family.documentation, family.labels, buckets=LATENCY_BUCKETS,
        registry=reference,
    )  # fmt: skip
    ours = CollectorRegistry()
    tallies = HistogramFamily(family, buckets=LATENCY_BUCKETS)
    ours.register(tallies)
    for model, version in (("a", "1.0"), ("b", "2")):
        for value in OBSERVED:
            histogram.labels(model, version).observe(value)
            tallies.child(model, version).observe(value)
    expected = without_created_values(generate_latest(reference))
    assert without_created_values(generate_latest(ours)) == expected
    assert b'{le="+Inf",model="a",version="1.0"} 11.0' in expected


def test_a_counter_tally_renders_as_prometheus_client_does() -> None:
    family = contract.REQUESTS
    reference = CollectorRegistry()
    counter = Counter(family.name, family.documentation, family.labels, registry=reference)
    ours = CollectorRegistry()
    tallies = CounterFamily(family)
    ours.register(tallies)
    for code, times in (("200", 3), ("503", 1)):
        for _ in range(times):
            counter.labels("m", "1.0", code).inc()
            tallies.child("m", "1.0", code).value += 1
    expected = without_created_values(generate_latest(reference))
    assert without_created_values(generate_latest(ours)) == expected
    assert b"marserve_requests_total" in expected and b"_created" in expected
