"""The PromQL behind each autoscaling metric, written once.

KEDA evaluates `keda_query` itself; an HPA reads the same number through prometheus-adapter,
whose rules (`adapter_metric_queries`, shipped by the Helm chart) wrap the same expression.
Both sum the metric over the model's pods, so HPA's average-per-pod and KEDA's threshold
per replica ask for the same replica count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from marserve import contract
from marserve_operator.spec import Metric, ModelSpec

RATE_WINDOW: Final = "1m"


@dataclass(frozen=True)
class MetricQuery:
    """One autoscaling signal: the series the workers export and how a pod's value is read."""

    name: str  # the custom metric's name, as HPA asks prometheus-adapter for it
    series: str  # the series the workers export
    is_counter: bool = False  # counters are read as a per-second rate

    def expression(self, matchers: str) -> str:
        selected = f"{self.series}{{{matchers}}}"
        return f"rate({selected}[{RATE_WINDOW}])" if self.is_counter else selected


METRIC_QUERIES: Final[dict[Metric, MetricQuery]] = {
    "inflight": MetricQuery(contract.INFLIGHT_REQUESTS.series, contract.INFLIGHT_REQUESTS.series),
    "queueDepth": MetricQuery(contract.QUEUE_DEPTH.series, contract.QUEUE_DEPTH.series),
    # A rate, so its custom metric is not named after the counter it is computed from.
    "requestsPerSecond": MetricQuery(
        "marserve_requests_per_second", contract.REQUESTS.series, is_counter=True
    ),
}


def pod_matchers(model: ModelSpec) -> str:
    """Label matchers for the model's pods: Deployment pods are named NAME-HASH-SUFFIX, and the
    segments after NAME contain no dash, so another model called NAME-x never matches."""
    return f'namespace="{model.namespace}",pod=~"{model.name}-[a-z0-9]+-[a-z0-9]+"'


def keda_query(model: ModelSpec) -> str:
    """The query a KEDA prometheus trigger divides by the per-replica target."""
    if model.autoscaling is None:
        raise ValueError(f"InferenceModel {model.name} has no autoscaling")
    query = METRIC_QUERIES[model.autoscaling.metric]
    return f"sum({query.expression(pod_matchers(model))})"


def adapter_metric_queries() -> list[dict[str, Any]]:
    """prometheus-adapter `rules.custom` entries serving each metric per pod to the HPA."""
    return [
        {
            "seriesQuery": f'{query.series}{{namespace!="",pod!=""}}',
            "resources": {
                "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
            },
            "name": {"matches": f"^{query.series}$", "as": query.name},
            "metricsQuery": (f"sum({query.expression('<<.LabelMatchers>>')}) by (<<.GroupBy>>)"),
        }
        for query in METRIC_QUERIES.values()
    ]
