"""Autoscaling that works, on a real Prometheus scraping real workers under a real load.

The operator's KEDA queries and the chart's prometheus-adapter rules are evaluated at the same
instants while idle, under a bounded load of CONCURRENCY clients, and after it: the in-flight
signal must read ~0, then close to the number of clients, then ~0 again; both paths must give
the same number; and the replica count an HPA would compute from it must rise and fall.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from marserve_operator import resources
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import Metric, parse_spec
from support.prometheus import PrometheusServer

CONCURRENCY = 8
LOAD_SECONDS = 8.0
MAX_REQUESTS = 400
TARGET_PER_POD = 2.0
MIN_REPLICAS, MAX_REPLICAS = 1, 10
HPA_TOLERANCE = 0.1  # the HPA controller's default --horizontal-pod-autoscaler-tolerance
# Scrapes stamp samples with their start time and write them a few ms later; a query at `at`
# made before a scrape that started just before `at` is written can miss its samples while the
# next query sees them. Waiting this long after `at` lets every such scrape land first.
SETTLE_S = 0.3
LOAD_SCRIPT = Path(__file__).with_name("load.py")
METRICS: tuple[Metric, ...] = ("inflight", "queueDepth", "requestsPerSecond")


def autoscaler_object(served: Any, *, metric: Metric, engine: str) -> dict[str, Any]:
    """The autoscaler the operator writes for the workers' InferenceModel."""
    model = parse_spec(
        name=served.name,
        namespace=served.namespace,
        spec={
            "archive": {"uri": "https://models.example.com/slow.mar"},
            "autoscaling": {
                "engine": engine,
                "metric": metric,
                "target": TARGET_PER_POD,
                "minReplicas": MIN_REPLICAS,
                "maxReplicas": MAX_REPLICAS,
            },
        },
    )
    autoscaler = resources.autoscaler(model, OperatorSettings())
    assert autoscaler is not None
    return autoscaler


def quantity(text: str) -> float:
    """A Kubernetes quantity as the HPA writes targets: plain or in milli-units."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass(frozen=True)
class Signal:
    """One autoscaling metric as both engines read it, taken from the objects the operator
    writes and the rules the chart ships."""

    metric: Metric
    keda_query: str
    keda_threshold: float
    adapter_query: str
    hpa_target: float


def signal(served: Any, rules: Sequence[Mapping[str, Any]], metric: Metric) -> Signal:
    (trigger,) = autoscaler_object(served, metric=metric, engine="keda")["spec"]["triggers"]
    (hpa_metric,) = autoscaler_object(served, metric=metric, engine="hpa")["spec"]["metrics"]
    # The adapter rule serving the metric name the HPA asks for, with the label matchers the
    # adapter fills in for an HPA over these pods.
    (rule,) = [r for r in rules if r["name"]["as"] == hpa_metric["pods"]["metric"]["name"]]
    matchers = f'namespace="{served.namespace}",pod=~"{"|".join(served.pods)}"'
    adapter_query = rule["metricsQuery"].replace("<<.LabelMatchers>>", matchers)
    return Signal(
        metric=metric,
        keda_query=trigger["metadata"]["query"],
        keda_threshold=float(trigger["metadata"]["threshold"]),
        adapter_query=adapter_query.replace("<<.GroupBy>>", "pod"),
        hpa_target=quantity(hpa_metric["pods"]["target"]["averageValue"]),
    )


def desired_replicas(*, current: int, average: float, target: float) -> int:
    """The HPA controller's rule for an AverageValue target: ceil(current * average / target),
    unless within the tolerance. KEDA's trigger becomes the same rule on an External metric,
    whose per-pod average is the query's value divided by the current replicas."""
    ratio = average / target
    desired = current if abs(ratio - 1) <= HPA_TOLERANCE else math.ceil(ratio * current)
    return min(max(desired, MIN_REPLICAS), MAX_REPLICAS)


@dataclass
class Reading:
    """Both paths' values for every metric, read at one instant."""

    at: float
    keda: dict[Metric, float]
    adapter: dict[Metric, dict[str, float]]


@dataclass
class Scenario:
    pods: list[str]
    inflight: Signal
    idle: Reading
    under_load: list[Reading]
    after: Reading
    load_summary: dict[str, int]
    dashboard_results: dict[str, int] = field(default_factory=dict)


def read(prometheus: PrometheusServer, signals: Sequence[Signal]) -> Reading:
    at = time.time()
    time.sleep(SETTLE_S)  # both paths then read the same samples
    keda: dict[Metric, float] = {}
    adapter: dict[Metric, dict[str, float]] = {}
    for item in signals:
        samples = prometheus.query(item.keda_query, at=at)
        keda[item.metric] = sum(sample.value for sample in samples)
        per_pod = prometheus.query(item.adapter_query, at=at)
        adapter[item.metric] = {sample.labels["pod"]: sample.value for sample in per_pod}
    return Reading(at=at, keda=keda, adapter=adapter)


def dashboard_expressions(dashboard: Mapping[str, Any], served: Any) -> list[str]:
    """Every panel query, with Grafana's variables set as a user viewing this model would."""
    return [
        target["expr"]
        .replace("$namespace", served.namespace)
        .replace("$model", served.name)
        .replace("$__rate_interval", "1m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


@pytest.fixture(scope="module")
def scenario(
    prometheus: PrometheusServer,
    served_model: Any,
    adapter_rules: list[dict[str, Any]],
    dashboard: dict[str, Any],
) -> Scenario:
    signals = [signal(served_model, adapter_rules, metric) for metric in METRICS]
    idle = read(prometheus, signals)
    command = [sys.executable, str(LOAD_SCRIPT)]
    for worker in served_model.workers:
        command += ["--url", f"{worker.server.inference}/predictions/{served_model.name}"]
    command += [
        *("--concurrency", str(CONCURRENCY)),
        *("--duration", str(LOAD_SECONDS)),
        *("--max-requests", str(MAX_REQUESTS)),
    ]
    load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    under_load = []
    try:
        time.sleep(2.5)  # clients connected and at least one scrape taken under load
        while load.poll() is None and len(under_load) < 20:
            under_load.append(read(prometheus, signals))
            time.sleep(0.5 - SETTLE_S)
        output, _ = load.communicate(timeout=LOAD_SECONDS + 60)
    finally:
        if load.poll() is None:
            load.kill()
    prometheus.wait_for(
        signals[0].keda_query, lambda samples: sum(x.value for x in samples) == 0, timeout_s=15
    )
    after = read(prometheus, signals)
    results = {
        expression: len(prometheus.query(expression))
        for expression in dashboard_expressions(dashboard, served_model)
    }
    return Scenario(
        pods=served_model.pods,
        inflight=signals[0],
        idle=idle,
        under_load=under_load,
        after=after,
        load_summary=json.loads(output),
        dashboard_results=results,
    )


def test_the_load_ran_and_succeeded(scenario: Scenario) -> None:
    assert set(scenario.load_summary) == {"200"}, scenario.load_summary
    assert scenario.load_summary["200"] >= CONCURRENCY * 2
    assert len(scenario.under_load) >= 4


def test_keda_inflight_query_tracks_the_load(scenario: Scenario) -> None:
    under_load = [reading.keda["inflight"] for reading in scenario.under_load]
    assert scenario.idle.keda["inflight"] == 0
    assert max(under_load) <= CONCURRENCY
    assert statistics.median(under_load) >= 0.6 * CONCURRENCY, under_load
    assert scenario.after.keda["inflight"] == 0


def test_keda_queue_depth_query_tracks_the_load(scenario: Scenario) -> None:
    # Each worker runs one request; the rest of the clients' requests wait.
    waiting = CONCURRENCY - len(scenario.pods)
    under_load = [reading.keda["queueDepth"] for reading in scenario.under_load]
    assert scenario.idle.keda["queueDepth"] == 0
    assert max(under_load) <= waiting
    assert statistics.median(under_load) >= 0.5 * waiting, under_load
    assert scenario.after.keda["queueDepth"] == 0


def test_keda_request_rate_rises_with_the_load(scenario: Scenario) -> None:
    assert scenario.idle.keda["requestsPerSecond"] == 0
    assert scenario.under_load[-1].keda["requestsPerSecond"] > 0


def test_adapter_rules_give_the_same_numbers_per_pod(scenario: Scenario) -> None:
    for reading in [scenario.idle, *scenario.under_load, scenario.after]:
        for metric in METRICS:
            per_pod = reading.adapter[metric]
            if metric == "requestsPerSecond":
                # A pod's request counter appears with its first request and needs two scrapes
                # for a rate: until then neither path sees that pod (KEDA reads nothing as 0).
                assert set(per_pod) <= set(scenario.pods), per_pod
            else:
                assert sorted(per_pod) == sorted(scenario.pods), (metric, per_pod)
            assert math.isclose(sum(per_pod.values()), reading.keda[metric], abs_tol=1e-9)
    assert sorted(scenario.after.adapter["requestsPerSecond"]) == sorted(scenario.pods)


def test_desired_replicas_rise_under_load_and_fall_after(scenario: Scenario) -> None:
    current = len(scenario.pods)
    inflight = scenario.inflight

    def desired(reading: Reading) -> int:
        per_pod = list(reading.adapter["inflight"].values())
        hpa = desired_replicas(
            current=current, average=statistics.fmean(per_pod), target=inflight.hpa_target
        )
        keda = desired_replicas(
            current=current,
            average=reading.keda["inflight"] / current,
            target=inflight.keda_threshold,
        )
        assert hpa == keda, (reading, inflight)
        return hpa

    assert desired(scenario.idle) == MIN_REPLICAS
    peak = max(desired(reading) for reading in scenario.under_load)
    assert current < peak <= math.ceil(CONCURRENCY / TARGET_PER_POD)
    assert desired(scenario.after) == MIN_REPLICAS


def test_every_dashboard_query_returns_data(scenario: Scenario) -> None:
    empty = [expression for expression, count in scenario.dashboard_results.items() if not count]
    assert not empty, empty
    assert len(scenario.dashboard_results) >= 7
