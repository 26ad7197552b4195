"""The handler metrics API: TorchServe's calls, default dimensions, drain semantics."""

from __future__ import annotations

import pytest

from marserve.handler_metrics import (
    Dimension,
    HandlerMetrics,
    MetricRecord,
    MetricsCacheValueError,
    MetricTypes,
)


@pytest.fixture
def metrics() -> HandlerMetrics:
    cache = HandlerMetrics("tiny")
    cache.request_ids = {0: "a", 1: "b"}
    return cache


def test_each_call_records_name_unit_type_and_defaults(metrics: HandlerMetrics) -> None:
    metrics.add_time("Pre", 1.5, 1)
    metrics.add_time("Slow", 2, unit="s", metric_type=MetricTypes.HISTOGRAM)
    metrics.add_counter("Hits", 3, 0, [Dimension("Route", "x")])
    metrics.add_size("Mem", 12.0, unit="kB")
    metrics.add_percent("Util", 40)
    metrics.add_metric("Custom", 7, "items", dimensions={"Kind": "k"}, metric_type="gauge")
    records = metrics.drain()
    default = {"ModelName": "tiny", "Level": "Model"}
    assert records == [
        MetricRecord("Pre", 1.5, "ms", default, "gauge", "b"),
        MetricRecord("Slow", 2.0, "s", default, "histogram", "a,b"),
        MetricRecord("Hits", 3.0, "count", {"Route": "x", **default}, "counter", "a"),
        MetricRecord("Mem", 12.0, "kB", default, "gauge", "a,b"),
        MetricRecord("Util", 40.0, "percent", default, "gauge", "a,b"),
        MetricRecord("Custom", 7.0, "items", {"Kind": "k", **default}, "gauge", "a,b"),
    ]


def test_drain_returns_each_record_once(metrics: HandlerMetrics) -> None:
    metrics.add_counter("Hits", 1)
    assert len(metrics.drain()) == 1
    assert metrics.drain() == []


def test_given_dimensions_override_defaults_and_errors_get_level_error(
    metrics: HandlerMetrics,
) -> None:
    metrics.add_counter(
        "Hits", 1, dimensions=[Dimension("ModelName", "other"), Dimension("Level", "Host")]
    )
    metrics.add_error("Failures", 1)
    hits, failures = metrics.drain()
    assert hits.dimensions == {"ModelName": "other", "Level": "Host"}
    assert failures.dimensions == {"ModelName": "tiny", "Level": "Error"}
    assert failures.request_id is None


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add_time("T", 1, unit="minutes"),
        lambda m: m.add_size("S", 1, unit="TB"),
        lambda m: m.add_counter("C", -1),
        lambda m: m.add_metric("M", "fast", "ms"),
        lambda m: m.add_metric("M", 1, "ms", metric_type="summary"),
    ],
)
def test_invalid_values_units_and_types_are_rejected(metrics: HandlerMetrics, call: object) -> None:
    with pytest.raises(ValueError):
        call(metrics)  # type: ignore[operator]
    assert metrics.drain() == []


def test_declared_metric_updates_with_dimension_values(metrics: HandlerMetrics) -> None:
    metric = metrics.add_metric_to_cache("Tokens", "count", ["Route"], MetricTypes.COUNTER)
    metric.add_or_update(5, ["chat", "tiny", "Model"], request_id="a")
    with pytest.raises(MetricsCacheValueError):
        metric.add_or_update(1, ["chat"])
    (record,) = metrics.drain()
    assert record.dimensions == {"Route": "chat", "ModelName": "tiny", "Level": "Model"}
    assert (record.value, record.request_id) == (5.0, "a")


def test_no_request_ids_means_no_request_id() -> None:
    metrics = HandlerMetrics("tiny")
    metrics.add_time("T", 1)
    assert metrics.drain()[0].request_id is None


def test_dimension_prints_like_torchserve() -> None:
    assert str(Dimension("Level", "Model")) == "Level:Model"
    assert Dimension("a", "b").to_dict() == {"Name": "a", "Value": "b"}
    assert Dimension("a", "b") == Dimension("a", "b")
