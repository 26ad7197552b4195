"""The reconcile path and the API client, driven directly against the emulator: idempotence,
pruning, discovery of optional APIs, ownership, and retries."""

from __future__ import annotations

import socket

import kmock
import pytest
from kubernetes_asyncio.client import Configuration

from marserve_operator import cluster, reconcile
from support.kube_emulator import Failure
from support.operator_harness import DEPLOYMENTS, NAMESPACE, SERVICES, model_path
from support.reconcile_driver import FAST, converge, create_model, owner
from support.running_emulator import RunningEmulator

HPAS = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers"
PDBS = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets"
MONITORS = "/apis/monitoring.coreos.com/v1/namespaces/ml/servicemonitors"
AUTOSCALING = {"minReplicas": 2, "maxReplicas": 4, "metric": "inflight", "target": 8}


def _writes(api: RunningEmulator, since: int) -> list[str]:
    """Requests that change something: all but reads and applies (an apply that changes nothing
    leaves the object as it was, which `_versions` checks)."""
    return [
        f"{e.method} {e.path}"
        for e in api.log()[since:]
        if e.method != "GET" and not (e.method == "PATCH" and e.kind)
    ]


def _versions(api: RunningEmulator, name: str) -> dict[str, str]:
    paths = (model_path(name), f"{DEPLOYMENTS}/{name}", f"{SERVICES}/{name}", f"{PDBS}/{name}")
    return {path: (api.get(path) or {})["metadata"]["resourceVersion"] for path in paths}


async def test_second_converge_writes_nothing(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "idem")
    first = await converge(api, client, "idem")
    assert sorted(first.actions) == [
        "created Deployment",
        "created PodDisruptionBudget",
        "created Service",
    ]
    assert first.events  # the first status is news
    mark, versions = len(api.log()), _versions(api, "idem")
    second = await converge(api, client, "idem")
    assert (second.actions, list(second.events)) == ([], [])
    assert _writes(api, mark) == []
    assert _versions(api, "idem") == versions


async def test_autoscaler_and_budget_follow_the_spec(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "scales", autoscaling=AUTOSCALING)
    await converge(api, client, "scales")
    assert api.get(f"{HPAS}/scales") is not None
    assert api.get(f"{PDBS}/scales") is not None
    assert "replicas" not in (api.get(f"{DEPLOYMENTS}/scales") or {})["spec"]

    api.request("PATCH", model_path("scales"), {"spec": {"autoscaling": None, "replicas": 1}})
    outcome = await converge(api, client, "scales")
    assert sorted(outcome.actions) == [
        "deleted HorizontalPodAutoscaler",
        "deleted PodDisruptionBudget",
        "patched Deployment",
    ]
    assert api.get(f"{HPAS}/scales") is None
    assert (api.get(f"{DEPLOYMENTS}/scales") or {})["spec"]["replicas"] == 1


async def test_objects_owned_by_others_are_left_alone(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    foreign = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "shared", "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"},
            "maxReplicas": 3,
        },
    }
    api.request("POST", HPAS, foreign)
    create_model(api, "shared")
    await converge(api, client, "shared")
    assert (api.get(f"{HPAS}/shared") or {})["spec"]["maxReplicas"] == 3


async def test_service_monitor_only_when_its_api_is_served(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "watched")
    await converge(api, client, "watched")
    assert api.get(f"{MONITORS}/watched") is None

    api.emulator.resources["monitoring.coreos.com/v1/servicemonitors"] = kmock.ResourceInfo(
        kind="ServiceMonitor", namespaced=True, verbs={"get", "list", "create", "patch", "delete"}
    )
    try:
        outcome = await converge(api, client, "watched")
        assert "created ServiceMonitor" in outcome.actions
        monitor = api.get(f"{MONITORS}/watched")
        assert monitor is not None
        assert monitor["metadata"]["ownerReferences"][0]["name"] == "watched"
    finally:  # the API goes away again, with its objects (kmock serves what it stores)
        del api.emulator.resources["monitoring.coreos.com/v1/servicemonitors"]
        del api.emulator.objects["monitoring.coreos.com/v1/servicemonitors", NAMESPACE, "watched"]


async def test_invalid_spec_writes_a_condition_and_no_objects(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "invalid", workersPerReplica=-3)
    outcome = await converge(api, client, "invalid")
    assert outcome.actions == []
    model = api.get(model_path("invalid")) or {}
    progressing = next(c for c in model["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "InvalidSpec"
    assert "workersPerReplica" in progressing["message"]
    assert api.get(f"{DEPLOYMENTS}/invalid") is None


async def test_remove_deletes_what_the_model_owns(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "removed")
    await converge(api, client, "removed")
    removed = await reconcile.remove(client, owner(api, "removed"))
    assert sorted(removed) == [
        "deleted Deployment",
        "deleted PodDisruptionBudget",
        "deleted Service",
    ]
    assert api.get(f"{DEPLOYMENTS}/removed") is None


async def test_client_retries_server_errors_and_conflicts(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "retried")
    api.fail(Failure("PATCH", model_path("retried") + "/status", 500, "InternalError", times=2))
    api.fail(Failure("GET", model_path("retried"), 409, "Conflict"))
    api.fail(Failure("GET", model_path("retried"), 429, "TooManyRequests"))
    where = {"namespace": NAMESPACE, "name": "retried"}
    patched = await client.patch_status(
        reconcile.API_VERSION, reconcile.KIND, **where, status={"phase": "Pending"}
    )
    assert patched["status"] == {"phase": "Pending"}
    found = await client.get(reconcile.API_VERSION, reconcile.KIND, **where)
    assert (found or {})["status"] == {"phase": "Pending"}


async def test_client_gives_up_with_the_servers_reason(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    api.fail(Failure("GET", model_path("never"), 503, "ServiceUnavailable", times=FAST.attempts))
    with pytest.raises(cluster.ApiError) as raised:
        await client.get(reconcile.API_VERSION, reconcile.KIND, namespace=NAMESPACE, name="never")
    assert (raised.value.status, raised.value.reason) == (503, "ServiceUnavailable")


async def test_lost_connection_is_an_api_error_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    unreachable = cluster.Cluster(retry=FAST)
    await unreachable.configure(Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(cluster.ApiError) as raised:
            await unreachable.get("v1", "Service", namespace=NAMESPACE, name="any")
    finally:
        await unreachable.close()
    assert raised.value.status == 0 and raised.value.retryable


def test_retry_after_is_honoured_within_the_ceiling() -> None:
    policy = cluster.RetryPolicy(first_delay=0.5, max_delay=4.0)
    assert [policy.delay(n, None) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(0, "3") == 3.0
    assert policy.delay(0, "60") == 4.0


def test_resource_paths_need_no_discovery() -> None:
    assert cluster.resource("v1", "Pod").path(namespace="ml") == "/api/v1/namespaces/ml/pods"
    budget = cluster.resource("policy/v1", "PodDisruptionBudget")
    assert budget.path(name="m", namespace="ml") == (
        "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/m"
    )
    status = budget.subresources["status"].path(name="m", namespace="ml")
    assert status == "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/m/status"


async def test_remove_leaves_a_forbidden_delete_to_garbage_collection(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "gc")
    await converge(api, client, "gc")
    api.fail(Failure("DELETE", f"{DEPLOYMENTS}/gc", 403, "Forbidden"))
    removed = await reconcile.remove(client, owner(api, "gc"))
    assert "left Deployment to garbage collection" in removed
    assert "deleted Service" in removed


async def test_an_object_another_controller_owns_is_not_taken_over(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "taken",
            "namespace": NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "1", "controller": True}
            ],
        },
        "spec": {"replicas": 7},
    }
    api.request("POST", DEPLOYMENTS, theirs)
    create_model(api, "taken")
    outcome = await converge(api, client, "taken")
    progressing = next(c for c in outcome.status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "OwnershipConflict"
    assert "controlled by Other x" in progressing["message"]
    assert (api.get(f"{DEPLOYMENTS}/taken") or {})["spec"] == {"replicas": 7}
