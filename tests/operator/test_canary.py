"""Canary rollouts: a second Deployment beside the stable one, a traffic split by HTTPRoute
weights or by replicas, no traffic for a canary that is not ready, and promotion and rollback
as spec edits that converge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marserve_operator import cluster, resources, status
from marserve_operator.resources import CanaryPlan
from marserve_operator.spec import ModelSpec, SpecError, parse_spec
from support import crd_schema
from support.operator_fixtures import SETTINGS, kube_validate, minimal_spec, model
from support.operator_harness import (
    DEPLOYMENTS,
    SERVICES,
    model_path,
    report_deployment_ready,
)
from support.reconcile_driver import converge, create_model
from support.running_emulator import RunningEmulator

STABLE_URI = "https://models.example.com/m.mar"
CANARY_URI = "https://models.example.com/m-2.mar"
CANARY = {"archive": {"uri": CANARY_URI}, "trafficPercent": 25}
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _canary_model(**changes: Any) -> ModelSpec:
    return model(spec=minimal_spec(STABLE_URI), **{"replicas": 4, "canary": CANARY, **changes})


def _plan(m: ModelSpec, *, ready: bool, gateway: bool = False) -> CanaryPlan:
    return resources.plan_canary(m, gateway_served=gateway, canary_ready=ready, stable_now=None)


def _archive_in(deployment: dict[str, Any]) -> bool:
    (extract,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return CANARY_URI in json.dumps(extract)


# --- the plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [(4, 25, 1), (10, 30, 3), (3, 1, 1), (5, 0, 0), (3, 100, 3), (8, 50, 4)],
)
def test_canary_replicas_follow_the_percentage_with_at_least_one(
    total: int, percent: int, expected: int
) -> None:
    assert resources.canary_replica_count(total, percent) == expected


def test_replica_split_gives_the_canary_pods_only_once_it_is_ready() -> None:
    m = _canary_model()
    waiting = _plan(m, ready=False)
    assert (waiting.split, waiting.canary_replicas, waiting.stable_replicas) == ("Replicas", 1, 4)
    assert waiting.canary_weight == 0
    ready = _plan(m, ready=True)
    assert (ready.canary_replicas, ready.stable_replicas, ready.canary_weight) == (1, 3, 25)
    whole = _plan(_canary_model(canary={**CANARY, "trafficPercent": 100}), ready=True)
    assert (whole.canary_replicas, whole.stable_replicas) == (4, 0)
    one = _plan(_canary_model(replicas=1), ready=True)
    assert (one.canary_replicas, one.stable_replicas) == (1, 1)


def test_gateway_split_keeps_every_stable_pod_and_weights_the_route() -> None:
    m = _canary_model(gatewayRef={"name": "web"})
    plan = _plan(m, ready=True, gateway=True)
    assert (plan.split, plan.stable_replicas, plan.canary_weight) == ("HTTPRoute", 4, 25)
    without_api = _plan(m, ready=True, gateway=False)
    assert without_api.split == "Replicas"


def test_an_autoscaled_model_keeps_its_autoscaler_over_the_stable_replicas() -> None:
    m = _canary_model(autoscaling={"minReplicas": 2, "maxReplicas": 8})
    plan = resources.plan_canary(m, gateway_served=False, canary_ready=True, stable_now=8)
    assert (plan.canary_replicas, plan.stable_replicas) == (2, None)
    objects = resources.desired_objects(m, SETTINGS, service_monitor_available=False, canary=plan)
    assert "replicas" not in objects[0]["spec"]


# --- the objects ---------------------------------------------------------------------------------


def test_canary_runs_its_own_archive_in_a_deployment_beside_the_stable_one() -> None:
    m = _canary_model()
    objects = resources.desired_objects(
        m, SETTINGS, service_monitor_available=False, canary=_plan(m, ready=True)
    )
    for obj in objects:
        kube_validate(obj)
    stable, service, canary = (objects[0], objects[1], objects[-1])
    assert (stable["metadata"]["name"], canary["metadata"]["name"]) == ("resnet", "resnet-canary")
    assert stable["metadata"]["labels"][resources.REVISION_LABEL] == "stable"
    assert canary["metadata"]["labels"][resources.REVISION_LABEL] == "canary"
    assert canary["spec"]["template"]["metadata"]["labels"][resources.REVISION_LABEL] == "canary"
    assert _archive_in(canary) and not _archive_in(stable)
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (3, 1)
    stable_pods = stable["spec"]["template"]["metadata"]["labels"]
    canary_pods = canary["spec"]["template"]["metadata"]["labels"]
    # Each Deployment selects only its own pods; the one Service selects both.
    assert not stable["spec"]["selector"]["matchLabels"].items() <= canary_pods.items()
    assert not canary["spec"]["selector"]["matchLabels"].items() <= stable_pods.items()
    assert service["spec"]["selector"].items() <= stable_pods.items()
    assert service["spec"]["selector"].items() <= canary_pods.items()


def test_a_canary_that_is_not_ready_is_outside_the_service() -> None:
    m = _canary_model()
    service = resources.stable_service(m, _plan(m, ready=False))
    assert service["spec"]["selector"] == resources.selector(m)
    canary = resources.canary_revision(m, replicas=1)
    assert not resources.selector(m).items() <= resources.labels(canary).items()


def _route(m: ModelSpec, plan: CanaryPlan | None) -> dict[str, Any]:
    route = resources.http_route(m, plan)
    assert crd_schema.published_errors(crd_schema.HTTP_ROUTE_CRD, route) == []
    return route


def test_http_route_weights_the_stable_and_canary_services() -> None:
    m = _canary_model(gatewayRef={"name": "web", "namespace": "gateways", "sectionName": "http"})
    route = _route(m, _plan(m, ready=True, gateway=True))
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "web",
            "namespace": "gateways",
            "sectionName": "http",
        }
    ]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": "resnet", "port": 8080, "weight": 75},
        {"name": "resnet-canary", "port": 8080, "weight": 25},
    ]
    unready = _route(m, _plan(m, ready=False, gateway=True))
    assert [b["weight"] for b in unready["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    objects = resources.desired_objects(
        m,
        SETTINGS,
        service_monitor_available=False,
        gateway_available=True,
        canary=_plan(m, ready=True, gateway=True),
    )
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert {("Service", "resnet-canary"), ("HTTPRoute", "resnet")} <= names
    canary_service = next(
        o for o in objects if o["metadata"]["name"] == "resnet-canary" and o["kind"] == "Service"
    )
    kube_validate(canary_service)


def test_a_model_behind_a_gateway_without_a_canary_has_one_backend() -> None:
    m = model(spec=minimal_spec(), gatewayRef={"name": "web"})
    (rule,) = _route(m, None)["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "resnet", "port": 8080}]


def test_published_gateway_schema_catches_a_bad_weight() -> None:
    m = _canary_model(gatewayRef={"name": "web"})
    route = resources.http_route(m, _plan(m, ready=True, gateway=True))
    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = -1
    assert crd_schema.published_errors(crd_schema.HTTP_ROUTE_CRD, route)


def test_a_canary_needs_room_for_its_name_suffix() -> None:
    spec = {**minimal_spec(), "canary": CANARY}
    with pytest.raises(SpecError, match="at most 56 characters with a canary"):
        parse_spec(name="a" * 57, namespace="ml", spec=spec)
    assert parse_spec(name="a" * 56, namespace="ml", spec=spec).canary is not None


# --- status --------------------------------------------------------------------------------------


def _observation(m: ModelSpec, *, ready: bool, pods: list[dict[str, Any]]) -> Any:
    canary = resources.canary_revision(m, replicas=1)
    numbers = {"readyReplicas": 1, "updatedReplicas": 1, "replicas": 1} if ready else {}
    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, **numbers},
    }
    plan = _plan(m, ready=ready)
    return status.CanaryObservation(
        model=canary,
        deployment=deployment,
        pods=pods,
        split=plan.split,
        weight=plan.canary_weight,
        stable_replicas=plan.stable_replicas,
    )


def _built(m: ModelSpec, canary: Any, *, stable_ready: int = 3) -> dict[str, Any]:
    numbers = {"readyReplicas": stable_ready, "updatedReplicas": stable_ready}
    stable = {
        "metadata": {"generation": 1},
        "spec": {"replicas": stable_ready},
        "status": {"observedGeneration": 1, **numbers},
    }
    return status.build_status(
        model=m,
        deployment=stable,
        pods=[],
        previous={},
        now="2026-11-22T01:00:00Z",
        url="http://resnet.ml.svc:8080/predictions/resnet",
        selector="app=resnet",
        canary=canary,
    )


def test_a_failing_canary_is_reported_with_its_pods_reason_and_takes_no_traffic() -> None:
    pull = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}
    pod = {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "worker", **pull}]}}
    m = _canary_model()
    result = _built(m, _observation(m, ready=False, pods=[pod]), stable_ready=4)
    canary = next(c for c in result["conditions"] if c["type"] == "CanaryReady")
    assert (canary["status"], canary["reason"]) == ("False", "ImagePullError")
    assert "no such image" in canary["message"]
    assert [r["trafficPercent"] for r in result["revisions"]] == [100, 0]
    assert result["phase"] == "Ready"  # the stable revision still serves


def test_a_ready_canary_shows_both_revisions_and_their_shares() -> None:
    m = _canary_model()
    result = _built(m, _observation(m, ready=True, pods=[]))
    canary = next(c for c in result["conditions"] if c["type"] == "CanaryReady")
    assert canary["status"] == "True"
    assert result["phase"] == "Ready"  # 3 stable pods are what a ready canary leaves
    assert result["trafficSplit"] == "Replicas"
    assert result["revisions"] == [
        {
            "revision": "stable",
            "archive": STABLE_URI,
            "replicas": 0,
            "readyReplicas": 3,
            "trafficPercent": 75,
        },
        {
            "revision": "canary",
            "archive": CANARY_URI,
            "replicas": 1,
            "readyReplicas": 1,
            "trafficPercent": 25,
        },
    ]


def test_without_a_canary_the_status_drops_its_fields() -> None:
    result = _built(model(), None)
    assert (result["revisions"], result["trafficSplit"]) == (None, None)
    assert "CanaryReady" not in {c["type"] for c in result["conditions"]}


# --- through the emulated API server ------------------------------------------------------------


def _condition(api: RunningEmulator, name: str, type_: str) -> dict[str, Any]:
    body = api.get(model_path(name)) or {}
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


async def test_canary_by_replicas_then_promotion(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "promo", replicas=4, canary=CANARY)
    first = await converge(api, client, "promo")
    assert "created Deployment" in first.actions
    canary = api.get(f"{DEPLOYMENTS}/promo-canary")
    assert canary is not None and canary["spec"]["replicas"] == 1
    assert canary["metadata"]["ownerReferences"][0]["name"] == "promo"
    service = api.get(f"{SERVICES}/promo") or {}
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == "promo"
    assert _condition(api, "promo", "CanaryReady")["status"] == "False"

    report_deployment_ready(api, "promo-canary", 1)
    await converge(api, client, "promo")
    service = api.get(f"{SERVICES}/promo") or {}
    assert "app.kubernetes.io/instance" not in service["spec"]["selector"]
    assert (api.get(f"{DEPLOYMENTS}/promo") or {})["spec"]["replicas"] == 3
    assert _condition(api, "promo", "CanaryReady")["status"] == "True"
    stored = (api.get(model_path("promo")) or {})["status"]
    assert stored["trafficSplit"] == "Replicas"
    assert [r["revision"] for r in stored["revisions"]] == ["stable", "canary"]

    promote = {"spec": {"archive": {"uri": CANARY_URI}, "canary": None}}
    api.request("PATCH", model_path("promo"), promote)
    promoted = await converge(api, client, "promo")
    assert "deleted Deployment promo-canary" in promoted.actions
    assert api.get(f"{DEPLOYMENTS}/promo-canary") is None
    stable = api.get(f"{DEPLOYMENTS}/promo") or {}
    assert _archive_in(stable) and stable["spec"]["replicas"] == 4
    assert (api.get(f"{SERVICES}/promo") or {})["spec"]["selector"] == {
        "app.kubernetes.io/name": "marserve-worker",
        "app.kubernetes.io/instance": "promo",
    }
    stored = (api.get(model_path("promo")) or {})["status"]
    assert "revisions" not in stored and "trafficSplit" not in stored
    assert "CanaryReady" not in {c["type"] for c in stored["conditions"]}


async def test_canary_behind_a_gateway_then_rollback(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    api.request("POST", CRDS, crd_schema.load_crd(crd_schema.HTTP_ROUTE_CRD))
    create_model(api, "routed", replicas=2, canary=CANARY, gatewayRef={"name": "web"})
    await converge(api, client, "routed")
    route = api.get(f"{ROUTES}/routed")
    assert route is not None
    weights = [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [100, 0]  # not ready yet: no traffic
    assert api.get(f"{SERVICES}/routed-canary") is not None

    report_deployment_ready(api, "routed-canary", 1)
    await converge(api, client, "routed")
    route = api.get(f"{ROUTES}/routed") or {}
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [75, 25]
    assert (api.get(f"{DEPLOYMENTS}/routed") or {})["spec"]["replicas"] == 2
    assert (api.get(model_path("routed")) or {})["status"]["trafficSplit"] == "HTTPRoute"

    api.request("PATCH", model_path("routed"), {"spec": {"canary": None}})
    rolled_back = await converge(api, client, "routed")
    assert sorted(a for a in rolled_back.actions if a.startswith("deleted")) == [
        "deleted Deployment routed-canary",
        "deleted Service routed-canary",
    ]
    route = api.get(f"{ROUTES}/routed") or {}
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "routed", "port": 8080}]
    assert not _archive_in(api.get(f"{DEPLOYMENTS}/routed") or {})
