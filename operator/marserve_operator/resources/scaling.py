"""The autoscaler (an HPA, a KEDA ScaledObject, or the KEDA HTTP add-on's HTTPScaledObject when the
model scales from zero) and the PodDisruptionBudget of a model."""

from __future__ import annotations

from typing import Any

from marserve_operator.resources.metadata import object_meta, selector
from marserve_operator.resources.metrics_queries import METRIC_QUERIES, keda_query
from marserve_operator.resources.scale_from_zero import http_scaled_object, scales_from_zero
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import Autoscaling, ModelSpec, quantity


def _scale_target(model: ModelSpec) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": model.name}


def _scale_down_behavior(scaling: Autoscaling) -> dict[str, Any]:
    """Loading a model is expensive, so pods go only after load stayed low for the window,
    and at most half of them per minute."""
    return {
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
        }
    }


def horizontal_pod_autoscaler(model: ModelSpec, scaling: Autoscaling) -> dict[str, Any]:
    """An autoscaling/v2 HPA on the per-pod metric prometheus-adapter serves."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(model),
        "spec": {
            "scaleTargetRef": _scale_target(model),
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": METRIC_QUERIES[scaling.metric].name},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": quantity(scaling.target),
                        },
                    },
                }
            ],
            "behavior": _scale_down_behavior(scaling),
        },
    }


def scaled_object(
    model: ModelSpec, scaling: Autoscaling, settings: OperatorSettings
) -> dict[str, Any]:
    """A KEDA ScaledObject whose prometheus trigger holds the summed metric at target per pod."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": object_meta(model),
        "spec": {
            "scaleTargetRef": _scale_target(model),
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": scaling.scale_down_stabilization_seconds,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"behavior": _scale_down_behavior(scaling)}
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": settings.prometheus_url,
                        "query": keda_query(model),
                        "threshold": f"{scaling.target:g}",
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }


def autoscaler(model: ModelSpec, settings: OperatorSettings) -> dict[str, Any] | None:
    """The object that owns the replica count, or None when spec.replicas does."""
    scaling = model.autoscaling
    if scaling is None:
        return None
    if scales_from_zero(model):
        return http_scaled_object(model, scaling)
    if scaling.engine == "keda":
        return scaled_object(model, scaling, settings)
    return horizontal_pod_autoscaler(model, scaling)


def pod_disruption_budget(model: ModelSpec) -> dict[str, Any] | None:
    """Voluntary evictions (node drains) take one pod at a time once there is more than one.
    Unhealthy pods may always be evicted, so a crash-looping model never blocks a drain."""
    floor = model.autoscaling.min_replicas if model.autoscaling else model.replicas
    if floor <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(model),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(model)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
