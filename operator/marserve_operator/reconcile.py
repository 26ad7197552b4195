"""Decides what an InferenceModel should own and makes the cluster match it.

One level-based path serves create, update, resume, timers and watch events: build the desired
objects, server-side apply them (which creates what is missing and puts drift back), delete what
is no longer wanted, then derive the status from what the cluster reports. Running it twice
changes nothing the second time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from marserve.contract import INFERENCE_PORT
from marserve_operator import cluster, resources, status
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import ModelSpec, SpecError, parse_spec
from marserve_operator.status import Transition

GROUP: Final = "serving.marserve.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "inferencemodels"
KIND: Final = "InferenceModel"
API_VERSION: Final = f"{GROUP}/{VERSION}"
MONITORING_API: Final = "monitoring.coreos.com/v1"
# Every kind the operator may own, so one that is no longer wanted is found and removed.
OWNED_KINDS: Final = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("policy/v1", "PodDisruptionBudget"),
    (MONITORING_API, "ServiceMonitor"),
    (resources.HTTP_ADD_ON_API, "HTTPScaledObject"),
    (resources.GATEWAY_API, "HTTPRoute"),
)

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The InferenceModel being reconciled, as plain data."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    body: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        plain: JsonObject = _plain(body)
        meta = plain.get("metadata") or {}
        generation = meta.get("generation")
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid") or "",
            generation=int(generation) if generation is not None else None,
            spec=plain.get("spec") or {},
            status=plain.get("status") or {},
            body=plain,
        )

    def reference(self) -> JsonObject:
        """An owner reference that makes the garbage collector remove children with the model."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def owns(self, obj: Mapping[str, Any]) -> bool:
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        return any(ref.get("uid") == self.uid for ref in refs)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did and saw: object actions for logs, the status, events to post."""

    actions: Sequence[str]
    status: Mapping[str, Any]
    events: Sequence[Transition]


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists (kopf hands over read-only mapping views)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def owned(obj: Mapping[str, Any], owner: Owner) -> JsonObject:
    result = copy.deepcopy(dict(obj))
    result["metadata"]["ownerReferences"] = [owner.reference()]
    return result


class OwnershipConflictError(Exception):
    """An object the model should own exists and is controlled by something else."""


def _check_controller(live: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    controller = next((ref for ref in refs if ref.get("controller")), None)
    mine = desired["metadata"]["ownerReferences"][0]["uid"]
    if controller is not None and controller.get("uid") != mine:
        meta = live["metadata"]
        raise OwnershipConflictError(
            f"{desired['kind']} {meta.get('namespace')}/{meta['name']} is controlled by "
            f"{controller.get('kind')} {controller.get('name')}; rename the model or remove it"
        )


def _version(obj: Mapping[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


async def apply(client: cluster.Cluster, obj: Mapping[str, Any]) -> str:
    """Server-side apply the object and say what that did: created it, patched drift back, or
    nothing (the API server leaves an object alone when an apply changes nothing). An object
    another controller owns is never taken over."""
    meta = obj["metadata"]
    live = await client.get(
        obj["apiVersion"], obj["kind"], namespace=meta.get("namespace"), name=meta["name"]
    )
    if live is not None:
        _check_controller(live, obj)
    applied = await client.apply(obj)
    if live is None:
        return "created"
    return "unchanged" if _version(applied) == _version(live) else "patched"


def owned_names(name: str) -> tuple[str, ...]:
    """The names a model's objects may have: its own, and its canary revision's."""
    return (name, f"{name}{resources.CANARY_SUFFIX}")


async def prune(
    client: cluster.Cluster,
    owner: Owner,
    keep: Sequence[Mapping[str, Any]],
    *,
    garbage_collected: bool = False,
) -> list[str]:
    """Delete objects of the owned kinds that this model owns but no longer wants (a canary's,
    once it is promoted or rolled back, among them). When the model itself is going, a refused
    delete is left to the garbage collector."""
    wanted = {(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in keep}
    deleted = []
    for api_version, kind in OWNED_KINDS:
        for name in owned_names(owner.name):
            if (api_version, kind, name) in wanted:
                continue
            where = {"namespace": owner.namespace, "name": name}
            live = await client.get(api_version, kind, **where)
            if live is None or not owner.owns(live):
                continue
            suffix = "" if name == owner.name else f" {name}"
            try:
                if await client.delete(api_version, kind, **where):
                    deleted.append(f"deleted {kind}{suffix}")
            except cluster.ApiError as exc:
                if not (garbage_collected and exc.status == 403):
                    raise
                deleted.append(f"left {kind}{suffix} to garbage collection")
    return deleted


def model_url(model: ModelSpec, settings: OperatorSettings) -> str:
    """Where clients send predictions: the model's Service, or the HTTP add-on's interceptor
    when the model scales from zero (its Service has no endpoints while it has no pods)."""
    if resources.scales_from_zero(model):
        return resources.interceptor_url(model, settings)
    return f"http://{model.name}.{model.namespace}.svc:{INFERENCE_PORT.number}/predictions/{model.model_name}"


def selector_string(model: ModelSpec) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(resources.selector(model).items()))


async def _deployment(client: cluster.Cluster, model: ModelSpec) -> JsonObject | None:
    name = resources.object_name(model)
    return await client.get("apps/v1", "Deployment", namespace=model.namespace, name=name)


async def _gateway_served(client: cluster.Cluster, model: ModelSpec) -> bool:
    return model.gateway is not None and await client.serves(resources.GATEWAY_API)


async def canary_now(
    client: cluster.Cluster, model: ModelSpec, *, gateway: bool
) -> tuple[resources.CanaryPlan, JsonObject | None] | None:
    """The canary's plan from what runs now, with its live Deployment; None without a canary.
    Readiness is judged against the replica count the plan asks of the canary."""
    if model.canary is None:
        return None
    stable_now = None
    if model.autoscaling is not None:
        stable = await _deployment(client, model)
        stable_now = ((stable or {}).get("spec") or {}).get("replicas")
    unready = resources.plan_canary(
        model, gateway_served=gateway, canary_ready=False, stable_now=stable_now
    )
    canary = resources.canary_revision(model, replicas=unready.canary_replicas)
    live = await _deployment(client, canary)
    ready = status.deployment_ready(canary, live)
    plan = resources.plan_canary(
        model, gateway_served=gateway, canary_ready=ready, stable_now=stable_now
    )
    return plan, live


async def _observe_canary(
    client: cluster.Cluster, model: ModelSpec
) -> status.CanaryObservation | None:
    if model.canary is None:
        return None
    planned = await canary_now(client, model, gateway=await _gateway_served(client, model))
    if planned is None:
        return None
    plan, live = planned
    canary = resources.canary_revision(model, replicas=plan.canary_replicas)
    pods = await client.list(
        "v1", "Pod", namespace=model.namespace, label_selector=selector_string(canary)
    )
    return status.CanaryObservation(
        model=canary,
        deployment=live,
        pods=pods,
        split=plan.split,
        weight=plan.canary_weight,
        stable_replicas=plan.stable_replicas,
    )


async def write_status(
    client: cluster.Cluster, owner: Owner, new_status: Mapping[str, Any]
) -> bool:
    """Patch the status subresource only when something in it changed."""
    if all(owner.status.get(key) == value for key, value in new_status.items()):
        return False
    await client.patch_status(
        API_VERSION, KIND, namespace=owner.namespace, name=owner.name, status=dict(new_status)
    )
    return True


async def refresh_status(
    client: cluster.Cluster, *, owner: Owner, model: ModelSpec, settings: OperatorSettings, now: str
) -> Outcome:
    """Derive the status from the Deployment and Pods and write it if it changed."""
    from_zero = resources.scales_from_zero(model)
    add_on_missing = from_zero and not await client.serves(resources.HTTP_ADD_ON_API)
    deployment = await client.get(
        "apps/v1", "Deployment", namespace=owner.namespace, name=owner.name
    )
    pods = await client.list(
        "v1", "Pod", namespace=owner.namespace, label_selector=selector_string(model)
    )
    new_status = status.build_status(
        model=model,
        deployment=deployment,
        pods=pods,
        previous=owner.status,
        now=now,
        url=model_url(model, settings),
        selector=selector_string(model),
        request_host=resources.request_host(model) if from_zero else None,
        http_add_on_missing=add_on_missing,
        canary=await _observe_canary(client, model),
    )
    wrote = await write_status(client, owner, new_status)
    events = status.transitions(owner.status, new_status) if wrote else []
    return Outcome([], new_status, events)


def parse(owner: Owner) -> ModelSpec:
    return parse_spec(
        name=owner.name, namespace=owner.namespace, spec=owner.spec, generation=owner.generation
    )


async def _blocked(
    client: cluster.Cluster, owner: Owner, *, reason: str, message: str, now: str
) -> Outcome:
    new_status = status.blocked_status(
        reason=reason, message=message, previous=owner.status, generation=owner.generation, now=now
    )
    wrote = await write_status(client, owner, new_status)
    events = status.transitions(owner.status, new_status) if wrote else []
    return Outcome([], new_status, events)


async def converge(
    client: cluster.Cluster, *, owner: Owner, settings: OperatorSettings, now: str
) -> Outcome:
    """The one reconcile path: owned objects as the spec says, then the status."""
    try:
        model = parse(owner)
    except SpecError as exc:
        return await _blocked(client, owner, reason=status.INVALID_SPEC, message=str(exc), now=now)
    monitoring = await client.serves(MONITORING_API)
    from_zero = resources.scales_from_zero(model)
    add_on = from_zero and await client.serves(resources.HTTP_ADD_ON_API)
    gateway = await _gateway_served(client, model)
    planned = await canary_now(client, model, gateway=gateway)
    desired = [
        owned(obj, owner)
        for obj in resources.desired_objects(
            model,
            settings,
            service_monitor_available=monitoring,
            http_add_on_available=add_on,
            gateway_available=gateway,
            canary=planned[0] if planned else None,
        )
    ]
    actions = []
    try:
        for obj in desired:
            action = await apply(client, obj)
            if action != "unchanged":
                actions.append(f"{action} {obj['kind']}")
    except OwnershipConflictError as exc:
        reason = status.OWNERSHIP_CONFLICT
        return await _blocked(client, owner, reason=reason, message=str(exc), now=now)
    actions += await prune(client, owner, desired)
    refreshed = await refresh_status(client, owner=owner, model=model, settings=settings, now=now)
    return Outcome(actions, refreshed.status, refreshed.events)


async def fetch_owner(client: cluster.Cluster, *, namespace: str, name: str) -> Owner | None:
    """The live InferenceModel, unless it is gone or going."""
    body = await client.get(API_VERSION, KIND, namespace=namespace, name=name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return Owner.from_body(body)


async def remove(client: cluster.Cluster, owner: Owner) -> list[str]:
    """Delete everything the model owns now, rather than waiting for garbage collection."""
    return await prune(client, owner, keep=(), garbage_collected=True)
