"""Pure builders of the Kubernetes objects an InferenceModel owns: a ModelSpec in, plain dicts out.

Nothing here talks to the API; the reconciler compares these dicts with what exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from marserve_operator.resources.canary import (
    GATEWAY_API,
    CanaryPlan,
    TrafficSplit,
    canary_objects,
    canary_replica_count,
    canary_revision,
    http_route,
    plan_canary,
    stable_service,
)
from marserve_operator.resources.metadata import (
    CANARY_SUFFIX,
    REVISION_LABEL,
    SPEC_HASH_ANNOTATION,
    labels,
    object_name,
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
    "CANARY_SUFFIX",
    "GATEWAY_API",
    "HTTP_ADD_ON_API",
    "REVISION_LABEL",
    "SPEC_HASH_ANNOTATION",
    "CanaryPlan",
    "TrafficSplit",
    "adapter_metric_queries",
    "autoscaler",
    "canary_objects",
    "canary_replica_count",
    "canary_revision",
    "deployment",
    "desired_objects",
    "http_route",
    "interceptor_url",
    "keda_query",
    "labels",
    "object_name",
    "plan_canary",
    "pod_disruption_budget",
    "pod_template",
    "request_host",
    "scales_from_zero",
    "scrape_annotations",
    "selector",
    "service",
    "service_monitor",
    "spec_hash",
    "stable_service",
]


def desired_objects(
    model: ModelSpec,
    settings: OperatorSettings,
    *,
    service_monitor_available: bool,
    http_add_on_available: bool = False,
    gateway_available: bool = False,
    canary: CanaryPlan | None = None,
) -> list[dict[str, Any]]:
    """Every object the model should own, in creation order (the Deployment first, so the
    Service and autoscaler have something to point at). Kinds of an API the cluster does not
    serve are left out; the status says what is missing."""
    stable = model
    if canary is not None and canary.stable_replicas is not None:
        stable = dataclasses.replace(model, replicas=canary.stable_replicas)
    objects = [deployment(stable, settings), stable_service(model, canary)]
    scaler = autoscaler(model, settings)
    if scaler is not None and scaler["apiVersion"] == HTTP_ADD_ON_API and not http_add_on_available:
        scaler = None
    optional = [
        scaler,
        pod_disruption_budget(model),
        service_monitor(model) if service_monitor_available else None,
    ]
    objects += [obj for obj in optional if obj is not None]
    objects += canary_objects(model, settings, canary)
    if model.gateway is not None and gateway_available:
        objects.append(http_route(model, canary))
    return objects
