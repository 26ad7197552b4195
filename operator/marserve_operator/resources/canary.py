"""A canary revision beside the stable one, and how requests are split between them.

With a Gateway API Gateway named in the spec (and the API served), an HTTPRoute weights the
stable and canary Services. Otherwise the model's one Service selects both revisions' pods and
the split follows their replica counts. Either way a canary takes no traffic until its
Deployment is ready: its HTTPRoute weight stays 0, or the Service keeps selecting stable pods
only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final, Literal

from marserve.contract import INFERENCE_PORT
from marserve_operator.resources.metadata import object_meta, revisions_selector
from marserve_operator.resources.networking import service
from marserve_operator.resources.workload import deployment
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import ModelSpec

GATEWAY_API: Final = "gateway.networking.k8s.io/v1"
TrafficSplit = Literal["HTTPRoute", "Replicas"]


@dataclass(frozen=True)
class CanaryPlan:
    """How the canary runs now: its split, replica counts, and the share of requests it gets."""

    split: TrafficSplit
    canary_replicas: int
    # None when an autoscaler owns the stable replica count.
    stable_replicas: int | None
    # Percent of requests routed to the canary now: 0 until it is ready.
    canary_weight: int


def canary_revision(model: ModelSpec, *, replicas: int) -> ModelSpec:
    """The canary's own ModelSpec: the stable one with the canary's archive, a fixed replica
    count, and the canary revision (which names and labels its objects)."""
    if model.canary is None:
        raise ValueError(f"InferenceModel {model.name} has no canary")
    return dataclasses.replace(
        model,
        archive=model.canary.archive,
        revision="canary",
        canary=None,
        gateway=None,
        autoscaling=None,
        replicas=replicas,
    )


def canary_replica_count(total: int, percent: int) -> int:
    """round(total x percent / 100), at least one pod for any share above 0."""
    return 0 if percent == 0 else max(1, round(total * percent / 100))


def plan_canary(
    model: ModelSpec, *, gateway_served: bool, canary_ready: bool, stable_now: int | None
) -> CanaryPlan:
    """The canary's plan for this reconcile. `stable_now` is the stable Deployment's replica
    count as the autoscaler last set it."""
    canary = model.canary
    if canary is None:
        raise ValueError(f"InferenceModel {model.name} has no canary")
    percent = canary.traffic_percent
    scaling = model.autoscaling
    total = model.replicas if scaling is None else max(stable_now or 0, scaling.min_replicas, 1)
    count = canary_replica_count(total, percent)
    split: TrafficSplit = "HTTPRoute" if gateway_served and model.gateway else "Replicas"
    stable: int | None = None if scaling is not None else total
    if split == "Replicas" and canary_ready and stable is not None:
        # The canary's pods replace stable ones, keeping one stable pod below 100 percent.
        stable = max(total - count, 1 if percent < 100 else 0)
    return CanaryPlan(
        split=split,
        canary_replicas=count,
        stable_replicas=stable,
        canary_weight=percent if canary_ready else 0,
    )


def stable_service(model: ModelSpec, plan: CanaryPlan | None) -> dict[str, Any]:
    """The model's Service; with a ready canary split by replicas it selects both revisions."""
    result = service(model)
    if plan is not None and plan.split == "Replicas" and plan.canary_weight > 0:
        result["spec"]["selector"] = revisions_selector(model)
    return result


def http_route(model: ModelSpec, plan: CanaryPlan | None) -> dict[str, Any]:
    """An HTTPRoute attaching the model's Services to the spec's Gateway, weighted by the plan."""
    gateway = model.gateway
    if gateway is None:
        raise ValueError(f"InferenceModel {model.name} names no gateway")
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway.name,
    }
    if gateway.namespace is not None:
        parent["namespace"] = gateway.namespace
    if gateway.section_name is not None:
        parent["sectionName"] = gateway.section_name
    stable: dict[str, Any] = {"name": model.name, "port": INFERENCE_PORT.number}
    backends = [stable]
    if plan is not None and plan.split == "HTTPRoute":
        stable["weight"] = 100 - plan.canary_weight
        canary = canary_revision(model, replicas=plan.canary_replicas)
        name = object_meta(canary)["name"]
        backends.append({"name": name, "port": INFERENCE_PORT.number, "weight": plan.canary_weight})
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": object_meta(model),
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": backends,
                }
            ],
        },
    }


def canary_objects(
    model: ModelSpec, settings: OperatorSettings, plan: CanaryPlan | None
) -> list[dict[str, Any]]:
    """The canary's Deployment, and its own Service when an HTTPRoute splits the requests."""
    if plan is None:
        return []
    canary = canary_revision(model, replicas=plan.canary_replicas)
    objects = [deployment(canary, settings)]
    if plan.split == "HTTPRoute":
        objects.append(service(canary))
    return objects
