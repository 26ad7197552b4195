"""Scale from zero through the KEDA HTTP add-on: its interceptor holds a request while the first
pod starts and counts requests as the scaling signal, which the model's own pods cannot export
while none runs.

The add-on routes by the Host header, so clients send requests to the interceptor's Service
with the host `request_host` names; the add-on makes and owns the KEDA ScaledObject itself.
"""

from __future__ import annotations

import math
from typing import Any, Final

from marserve.contract import INFERENCE_PORT
from marserve_operator.resources.metadata import object_meta
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import Autoscaling, ModelSpec

HTTP_ADD_ON_API: Final = "http.keda.sh/v1alpha1"
# The add-on's rate window: the same minute as the Prometheus queries' rate.
_RATE_WINDOW: Final = "1m"


def scales_from_zero(model: ModelSpec) -> bool:
    """Whether the model may have no pods, so only something outside them can start the first."""
    return model.autoscaling is not None and model.autoscaling.min_replicas == 0


def request_host(model: ModelSpec) -> str:
    """The Host header the interceptor routes the model's requests by."""
    return f"{model.name}.{model.namespace}.svc"


def interceptor_url(model: ModelSpec, settings: OperatorSettings) -> str:
    """Where clients send predictions, with `request_host` as their Host header."""
    return f"http://{settings.http_add_on_interceptor}/predictions/{model.model_name}"


def _scaling_metric(model: ModelSpec, scaling: Autoscaling) -> dict[str, Any]:
    """The add-on counts requests at the interceptor: requests per second as they are, and the
    requests in flight per pod otherwise. A queue-depth target becomes the in-flight target that
    leaves that many queued beside a full batch on every worker. The add-on takes whole numbers."""
    if scaling.metric == "requestsPerSecond":
        rate = {"targetValue": max(1, math.ceil(scaling.target)), "window": _RATE_WINDOW}
        return {"requestRate": {**rate, "granularity": "1s"}}
    target = scaling.target
    if scaling.metric == "queueDepth":
        target += model.batching.max_batch_size * model.workers_per_replica
    return {"concurrency": {"targetValue": max(1, math.ceil(target))}}


def http_scaled_object(model: ModelSpec, scaling: Autoscaling) -> dict[str, Any]:
    """An HTTPScaledObject scaling the model's Deployment between the spec's bounds on requests
    to its Service's inference port."""
    return {
        "apiVersion": HTTP_ADD_ON_API,
        "kind": "HTTPScaledObject",
        "metadata": object_meta(model),
        "spec": {
            "hosts": [request_host(model)],
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": model.name,
                "service": model.name,
                "port": INFERENCE_PORT.number,
            },
            "replicas": {"min": scaling.min_replicas, "max": scaling.max_replicas},
            "scaledownPeriod": scaling.scale_down_stabilization_seconds,
            "scalingMetric": _scaling_metric(model, scaling),
        },
    }
