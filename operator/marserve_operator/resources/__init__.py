"""Pure builders of the Kubernetes objects an InferenceModel owns: a ModelSpec in, plain dicts out.

Nothing here talks to the API; the reconciler compares these dicts with what exists.
"""

from __future__ import annotations

from typing import Any

from marserve_operator.resources.metadata import (
    SPEC_HASH_ANNOTATION,
    labels,
    scrape_annotations,
    selector,
)
from marserve_operator.resources.metrics_queries import adapter_metric_queries, keda_query
from marserve_operator.resources.networking import service, service_monitor
from marserve_operator.resources.scale_from_zero import (
    HTTP_ADD_ON_API,
    interceptor_url,
    request_host,
    scales_from_zero,
)
from marserve_operator.resources.scaling import autoscaler, pod_disruption_budget
from marserve_operator.resources.workload import deployment, pod_template, spec_hash
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import ModelSpec

__all__ = [
    "HTTP_ADD_ON_API",
    "SPEC_HASH_ANNOTATION",
    "adapter_metric_queries",
    "autoscaler",
    "deployment",
    "desired_objects",
    "interceptor_url",
    "keda_query",
    "labels",
    "pod_disruption_budget",
    "pod_template",
    "request_host",
    "scales_from_zero",
    "scrape_annotations",
    "selector",
    "service",
    "service_monitor",
    "spec_hash",
]


def desired_objects(
    model: ModelSpec,
    settings: OperatorSettings,
    *,
    service_monitor_available: bool,
    http_add_on_available: bool = False,
) -> list[dict[str, Any]]:
    """Every object the model should own, in creation order (the Deployment first, so the
    Service and autoscaler have something to point at). Kinds of an API the cluster does not
    serve are left out; the status says what is missing."""
    objects = [deployment(model, settings), service(model)]
    scaler = autoscaler(model, settings)
    if scaler is not None and scaler["apiVersion"] == HTTP_ADD_ON_API and not http_add_on_available:
        scaler = None
    optional = [
        scaler,
        pod_disruption_budget(model),
        service_monitor(model) if service_monitor_available else None,
    ]
    return objects + [obj for obj in optional if obj is not None]
