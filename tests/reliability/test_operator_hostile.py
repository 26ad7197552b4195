"""The operator against hostile input and an unreliable API server, with kopf running marserve's
handlers against the Kubernetes emulator.

tests/operator/test_operator_kubectl.py already proves one invalid spec, a restart between
reconciles, injected 409/429/500 answers and a dropped watch. This module adds every kind of
invalid spec (each refused by the CRD schema and, for clusters that skip it, reported in status,
without the operator looping), a stop in the middle of a reconcile, and the RBAC check: the verbs
the operator really uses over a whole life cycle, recorded at the emulator, against the chart's
ClusterRole.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
import yaml

from marserve_operator.resources.metadata import MODEL_LABEL
from marserve_operator.settings import OperatorSettings
from support import crd_schema, tools
from support.kube_emulator import Failure
from support.operator_harness import (
    CRD_FILE,
    DEPLOYMENTS,
    EXAMPLE_MANIFEST,
    MODELS,
    NAMESPACE,
    PODS,
    SERVICES,
    OperatorThread,
    condition,
    kubeconfig_env,
    model_path,
    report_deployment_ready,
    wait_for,
)
from support.running_emulator import RunningEmulator
from support.server_side_apply import APPLY_CONTENT_TYPE

Permission = tuple[str, str, str]  # (API group, resource[/subresource], verb)
VERBS = {"FETCH": "get", "LIST": "list", "WATCH": "watch", "CREATE": "create"}
VERBS |= {"UPDATE": "patch", "DELETE": "delete"}
KEDA = "keda.sh/v1alpha1/scaledobjects"
MONITORS = "monitoring.coreos.com/v1/servicemonitors"
HTTP_ADD_ON = "http.keda.sh/v1alpha1/httpscaledobjects"
GATEWAY_ROUTES = "gateway.networking.k8s.io/v1/httproutes"
CRD = crd_schema.load_crd()
PDBS = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets"
HPAS = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers"
SCALED_OBJECTS = "/apis/keda.sh/v1alpha1/namespaces/ml/scaledobjects"
SERVICE_MONITORS = "/apis/monitoring.coreos.com/v1/namespaces/ml/servicemonitors"
HTTP_SCALED_OBJECTS = "/apis/http.keda.sh/v1alpha1/namespaces/ml/httpscaledobjects"
HTTP_ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes"


class RecordingCluster:
    """The emulator plus a record of every API call the operator (not the test) made."""

    def __init__(self) -> None:
        self.api = RunningEmulator().start()
        self.used: set[Permission] = set()
        emulator = self.api.emulator
        handle = emulator._handle

        async def recording(request: Any) -> Any:
            agent = request.headers.get("User-Agent", "")
            # Discovery (/apis/GROUP/VERSION) needs no grant: every account may read it.
            resource = request.resource
            if resource is not None and resource.plural and not agent.startswith("Python-urllib"):
                plural = request.resource.plural
                if request.subresource:
                    plural = f"{plural}/{request.subresource}"
                verb = VERBS[request.action.name]
                self.used.add((request.resource.group, plural, verb))
                applying = request.headers.get("Content-Type", "").startswith(APPLY_CONTENT_TYPE)
                if applying and emulator.stored(request) is None:  # apply creates: both verbs
                    self.used.add((request.resource.group, plural, "create"))
            return await handle(request)

        emulator._handle = recording


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingCluster]:
    recording = RecordingCluster()
    api = recording.api
    kubeconfig = api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    try:
        with kubeconfig_env(kubeconfig):
            for name in ("default", NAMESPACE):
                namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                api.request("POST", "/api/v1/namespaces", namespace)
            api.request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(CRD_FILE.read_text()),
            )
            wait_for(lambda: api.get(MODELS) is not None, what="the InferenceModel resource")
            verbs = {"get", "list", "watch", "create", "patch", "delete"}
            optional = (
                (KEDA, "ScaledObject"),
                (MONITORS, "ServiceMonitor"),
                (HTTP_ADD_ON, "HTTPScaledObject"),
                (GATEWAY_ROUTES, "HTTPRoute"),
            )
            for key, kind in optional:
                api.emulator.resources[key] = kmock.ResourceInfo(
                    kind=kind, namespaced=True, verbs=verbs
                )
            yield recording
    finally:
        api.stop()


@pytest.fixture(scope="module")
def operator(cluster: RecordingCluster) -> Iterator[OperatorThread]:
    running = OperatorThread(settings=OperatorSettings()).start()
    try:
        yield running
    finally:
        running.stop()


def _model(name: str, **spec_changes: Any) -> dict[str, Any]:
    """The issue's example InferenceModel, renamed, with spec fields replaced (None removes)."""
    obj: dict[str, Any] = yaml.safe_load(EXAMPLE_MANIFEST)
    obj["metadata"]["name"] = name
    for key, value in spec_changes.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = copy.deepcopy(value)
    return obj


def _create(cluster: RecordingCluster, obj: dict[str, Any]) -> None:
    cluster.api.request("POST", MODELS, obj)


AUTOSCALING = {"minReplicas": 1, "maxReplicas": 3, "metric": "inflight", "target": 4}
# name -> spec changes that make the example invalid
INVALID: dict[str, dict[str, Any]] = {
    "no-archive": {"archive": None},
    "ftp-uri": {"archive": {"uri": "ftp://models.example.com/m.mar"}},
    "empty-uri": {"archive": {"uri": ""}},
    "file-uri": {"archive": {"uri": "file:///etc/passwd"}},
    "pvc-no-path": {"archive": {"uri": "pvc://claim"}},
    "short-digest": {"archive": {"uri": "https://m.example.com/m.mar", "sha256": "abc"}},
    "negative-replicas": {"replicas": -1},
    "text-replicas": {"replicas": "two"},
    "min-over-max": {"autoscaling": {**AUTOSCALING, "minReplicas": 5, "maxReplicas": 2}},
    "unknown-engine": {"autoscaling": {**AUTOSCALING, "engine": "magic"}},
    "unknown-metric": {"autoscaling": {**AUTOSCALING, "metric": "vibes"}},
    "zero-target": {"autoscaling": {**AUTOSCALING, "target": 0}},
    "unknown-accelerator": {"accelerator": {"type": "tpu", "count": 1}},
    "no-gpus": {"accelerator": {"type": "nvidia", "count": 0}},
    "zero-batch": {"batching": {"maxBatchSize": 0, "maxBatchDelayMs": 5}},
    "text-batching": {"batching": "fast"},
    "zero-timeout": {"responseTimeoutSeconds": 0},
    "negative-workers": {"workersPerReplica": -3},
    "bad-quantity": {"resources": {"requests": {"cpu": "lots"}}},
    "env-not-list": {"env": {"A": "b"}},
    "tolerations-text": {"tolerations": "all"},
    "empty-image": {"image": ""},
    "token-no-name": {"auth": {"tokenSecretRef": {}}},
    "model-name-spaces": {"modelName": "a b/../c"},
}


def _schema_refuses(obj: dict[str, Any]) -> bool:
    return bool(crd_schema.errors(CRD, obj) or crd_schema.cel_violations(CRD, obj))


def _invalid_condition(cluster: RecordingCluster, name: str) -> dict[str, Any] | None:
    found = condition(cluster.api.get(model_path(name)), "Progressing")
    return found if found.get("reason") == "InvalidSpec" else None


@pytest.mark.usefixtures("operator")
def test_every_invalid_spec_is_refused_by_the_schema_and_reported_in_status(
    cluster: RecordingCluster,
) -> None:
    """The API server's schema refuses each; an old cluster (no CEL) or a hand-written CRD may
    not, so the operator must still say what is wrong and create nothing."""
    accepted_by_schema = [
        name for name, changes in INVALID.items() if not _schema_refuses(_model(name, **changes))
    ]
    assert accepted_by_schema == []
    for name, changes in INVALID.items():
        _create(cluster, _model(name, **changes))
    for name in INVALID:
        found = wait_for(
            lambda name=name: _invalid_condition(cluster, name), what=f"{name}'s InvalidSpec"
        )
        assert found["status"] == "False" and found["message"], found
        status = (cluster.api.get(model_path(name)) or {})["status"]
        assert status["phase"] == "Failed"
        assert cluster.api.get(f"{DEPLOYMENTS}/{name}") is None


@pytest.mark.usefixtures("operator")
def test_invalid_specs_do_not_make_the_operator_loop_or_stop(
    cluster: RecordingCluster, operator: OperatorThread
) -> None:
    for name in INVALID:
        wait_for(lambda name=name: _invalid_condition(cluster, name), what=f"{name}'s status")
    paths = {model_path(name) + "/status" for name in INVALID}
    before = sum(1 for entry in cluster.api.log() if entry.path in paths)
    time.sleep(2)
    after = sum(1 for entry in cluster.api.log() if entry.path in paths)
    assert after == before, "the operator keeps rewriting the status of invalid models"
    assert operator.error is None
    _create(cluster, _model("after-invalid"))
    wait_for(lambda: cluster.api.get(f"{DEPLOYMENTS}/after-invalid"), what="a valid model served")


def test_stopped_in_the_middle_of_a_reconcile_the_restart_duplicates_nothing(
    cluster: RecordingCluster, operator: OperatorThread
) -> None:
    api = cluster.api
    # The Service apply keeps failing, so the reconcile is caught between its Deployment and
    # its Service when the operator stops.
    api.fail(Failure("PATCH", f"{SERVICES}/midway", 503, "ServiceUnavailable", times=10_000))
    _create(cluster, _model("midway", autoscaling=None, replicas=1))
    first = wait_for(lambda: api.get(f"{DEPLOYMENTS}/midway"), what="the Deployment")
    wait_for(
        lambda: any(e.method == "PATCH" and e.path == f"{SERVICES}/midway" for e in api.log()),
        what="the Service apply under way",
    )
    operator.stop()
    try:
        api.call(_clear_failures(api))
    finally:
        operator.start()
    wait_for(lambda: api.get(f"{SERVICES}/midway"), what="the Service after the restart")
    report_deployment_ready(api, "midway", 1)
    wait_for(
        lambda: (api.get(model_path("midway")) or {}).get("status", {}).get("phase") == "Ready",
        what="the status to converge to Ready",
    )
    assert api.created("midway").count("deployments") == 1
    deployment = api.get(f"{DEPLOYMENTS}/midway")
    assert deployment is not None and deployment["metadata"]["uid"] == first["metadata"]["uid"]
    for path in (DEPLOYMENTS, SERVICES):
        named = [o for o in api.items(path) if o["metadata"]["name"] == "midway"]
        assert len(named) == 1
        assert len(named[0]["metadata"]["ownerReferences"]) == 1


async def _clear_failures(api: RunningEmulator) -> None:
    api.emulator.failures.clear()


def test_every_create_whose_answer_is_lost_still_leaves_one_object_each(
    cluster: RecordingCluster, operator: OperatorThread
) -> None:
    """Each first apply is stored but answered 500 (the answer lost on the way back), and the
    first status writes conflict: the retries must find what exists instead of making it twice."""
    api = cluster.api
    owned = (DEPLOYMENTS, SERVICES, HPAS, PDBS, SERVICE_MONITORS)
    for path in owned:
        api.fail(Failure("PATCH", f"{path}/lossy", 500, "InternalError", applied=True))
    api.fail(Failure("PATCH", model_path("lossy") + "/status", 409, "Conflict", times=2))
    _create(cluster, _model("lossy", autoscaling={**AUTOSCALING, "minReplicas": 2}))
    for path in owned:
        wait_for(lambda path=path: api.get(f"{path}/lossy"), what=f"{path}/lossy")
    report_deployment_ready(api, "lossy", 2)
    wait_for(
        lambda: (api.get(model_path("lossy")) or {}).get("status", {}).get("phase") == "Ready",
        what="the status to converge to Ready",
    )
    for path in owned:
        named = [o for o in api.items(path) if o["metadata"]["name"] == "lossy"]
        assert len(named) == 1, path
        assert len(named[0]["metadata"]["ownerReferences"]) == 1, path
        applies = [e for e in api.log() if e.method == "PATCH" and e.path == f"{path}/lossy"]
        assert len(applies) >= 2, f"{path}: the lost apply not retried"
        assert api.created("lossy").count(path.rsplit("/", 1)[1]) == 1, path
    assert operator.error is None


TAMPERED = "tampered-by-hand"


def _tamper_and_wait_for_repair(api: RunningEmulator, paths: list[str], *, replicas: int) -> None:
    """Edit a label of each object by hand, nudge the Deployment (the operator follows it), and
    wait until every edit has been put back."""
    for path in paths:
        api.request("PATCH", path, {"metadata": {"labels": {MODEL_LABEL: TAMPERED}}})
    report_deployment_ready(api, "cycle", replicas)
    for path in paths:
        wait_for(
            lambda path=path: (api.get(path) or {})["metadata"]["labels"][MODEL_LABEL] == "cycle",
            what=f"{path} repaired",
        )


def _recorded_life_cycle(api: RunningEmulator) -> None:
    """Create with an HPA, a budget and a ServiceMonitor; follow pods; repair drift; switch to
    KEDA, then to scale from zero; run a canary behind a Gateway and roll it back; drop to one
    replica; delete."""
    scaling = {**AUTOSCALING, "minReplicas": 2, "engine": "hpa"}
    api.request("POST", MODELS, _model("cycle", autoscaling=scaling))
    owned = [f"{path}/cycle" for path in (SERVICES, HPAS, PDBS, SERVICE_MONITORS)]
    for path in [f"{DEPLOYMENTS}/cycle", *owned]:
        wait_for(lambda path=path: api.get(path), what=path)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cycle-1", "namespace": NAMESPACE, "labels": _pod_labels(api)},
        "spec": {"containers": [{"name": "worker", "image": "w"}]},
    }
    api.request("POST", PODS, pod)
    _tamper_and_wait_for_repair(api, owned, replicas=2)
    keda = {**scaling, "engine": "keda"}
    api.request("PATCH", model_path("cycle"), {"spec": {"autoscaling": keda}})
    wait_for(lambda: api.get(f"{SCALED_OBJECTS}/cycle"), what="the ScaledObject")
    wait_for(lambda: api.get(f"{HPAS}/cycle") is None, what="the HPA removed")
    _tamper_and_wait_for_repair(api, [f"{SCALED_OBJECTS}/cycle"], replicas=2)
    from_zero = {**keda, "minReplicas": 0}
    api.request("PATCH", model_path("cycle"), {"spec": {"autoscaling": from_zero}})
    wait_for(lambda: api.get(f"{HTTP_SCALED_OBJECTS}/cycle"), what="the HTTPScaledObject")
    wait_for(lambda: api.get(f"{SCALED_OBJECTS}/cycle") is None, what="the ScaledObject removed")
    _tamper_and_wait_for_repair(api, [f"{HTTP_SCALED_OBJECTS}/cycle"], replicas=2)
    canary = {"archive": {"uri": "https://models.example.com/next.mar"}, "trafficPercent": 20}
    routed = {"autoscaling": None, "replicas": 2, "canary": canary, "gatewayRef": {"name": "web"}}
    api.request("PATCH", model_path("cycle"), {"spec": routed})
    for path in (f"{HTTP_ROUTES}/cycle", f"{DEPLOYMENTS}/cycle-canary", f"{SERVICES}/cycle-canary"):
        wait_for(lambda path=path: api.get(path), what=path)
    wait_for(lambda: api.get(f"{HTTP_SCALED_OBJECTS}/cycle") is None, what="no HTTPScaledObject")
    _tamper_and_wait_for_repair(api, [f"{HTTP_ROUTES}/cycle"], replicas=2)
    api.request("PATCH", model_path("cycle"), {"spec": {"canary": None, "gatewayRef": None}})
    for path in (f"{HTTP_ROUTES}/cycle", f"{DEPLOYMENTS}/cycle-canary", f"{SERVICES}/cycle-canary"):
        wait_for(lambda path=path: api.get(path) is None, what=f"{path} removed")
    api.request("PATCH", model_path("cycle"), {"spec": {"autoscaling": None, "replicas": 1}})
    wait_for(lambda: api.get(f"{PDBS}/cycle") is None, what="the budget removed")
    api.request("DELETE", model_path("cycle"))
    wait_for(lambda: api.get(model_path("cycle")) is None, what="the model deleted")


# kopf observes namespaces only when it watches a list of them (MARSERVE_WATCH_NAMESPACES), not
# in the cluster-wide mode this module runs.
NAMESPACED_MODE_ONLY = {("", "namespaces", "list"), ("", "namespaces", "watch")}


@pytest.fixture(scope="module")
def life_cycle(cluster: RecordingCluster, operator: OperatorThread) -> set[Permission]:
    """Every permission the operator used in this module, a whole model life cycle included."""
    _recorded_life_cycle(cluster.api)
    return set(cluster.used)


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory) -> set[Permission]:
    objects = tools.helm_template({}, workdir=tmp_path_factory.mktemp("chart"))
    (role,) = [obj for obj in objects if obj["kind"] == "ClusterRole"]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_chart_grants_every_permission_the_operator_uses(
    life_cycle: set[Permission], granted: set[Permission]
) -> None:
    assert life_cycle - granted == set()


def test_the_chart_grants_no_permission_the_operator_does_not_use(
    life_cycle: set[Permission], granted: set[Permission]
) -> None:
    assert granted - life_cycle - NAMESPACED_MODE_ONLY == set()


def _pod_labels(api: RunningEmulator) -> dict[str, str]:
    deployment = api.get(f"{DEPLOYMENTS}/cycle")
    assert deployment is not None
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels
