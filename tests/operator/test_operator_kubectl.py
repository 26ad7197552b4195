"""The issue's scenario end to end: the real kubectl applies the example manifest to the emulated
API server, and kopf running marserve's handlers makes the cluster match it. The test plays the
cluster's controllers: it writes Deployment status and Pods the way kubelet would."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from marserve_operator.resources.metadata import MODEL_LABEL, SPEC_HASH_ANNOTATION
from support.kube_emulator import Failure
from support.operator_harness import (
    DEPLOYMENTS,
    NAMESPACE,
    PODS,
    Kubectl,
    OperatorThread,
    condition,
    manifest,
    model_path,
    report_deployment_ready,
    wait_for,
)
from support.running_emulator import RunningEmulator

pytestmark = pytest.mark.usefixtures("operator")

HPAS = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers"
PDBS = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets"
SERVICES = "/api/v1/namespaces/ml/services"
EVENTS = "/api/v1/namespaces/ml/events"


def _spec_hash(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][SPEC_HASH_ANNOTATION])


def _status(cluster: RunningEmulator, name: str) -> dict[str, Any]:
    return dict((cluster.get(model_path(name)) or {}).get("status") or {})


def _events_for(cluster: RunningEmulator, name: str) -> list[dict[str, Any]]:
    return [
        event
        for event in cluster.items(EVENTS)
        if (event.get("involvedObject") or {}).get("name") == name
        and (event.get("involvedObject") or {}).get("kind") == "InferenceModel"
    ]


def test_example_manifest_becomes_valid_owned_objects_and_ready(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("resnet"))

    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/resnet"), what="the Deployment")
    service = wait_for(lambda: cluster.get(f"{SERVICES}/resnet"), what="the Service")
    hpa = wait_for(lambda: cluster.get(f"{HPAS}/resnet"), what="the HPA")
    model = cluster.get(model_path("resnet"))
    assert model is not None
    for owned in (deployment, service, hpa):
        assert owned["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "serving.marserve.io/v1alpha1",
                "kind": "InferenceModel",
                "name": "resnet",
                "uid": model["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        kubernetes_validate.validate(owned, "1.30.0", strict=True)

    pod = deployment["spec"]["template"]["spec"]
    assert "replicas" not in deployment["spec"]  # the HPA owns replicas
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert pod["initContainers"], "the archive is extracted by an init container"
    assert {port["port"] for port in service["spec"]["ports"]} == {8080, 8082}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)
    assert cluster.get(f"{PDBS}/resnet") is None  # one replica may go: no budget needed

    status = wait_for(lambda: _status(cluster, "resnet").get("phase"), what="a phase")
    assert status == "Pending"
    assert _status(cluster, "resnet")["url"] == "http://resnet.ml.svc:8080/predictions/resnet"

    report_deployment_ready(cluster, "resnet", replicas=1)
    wait_for(lambda: _status(cluster, "resnet").get("phase") == "Ready", what="phase Ready")
    final = cluster.get(model_path("resnet"))
    assert condition(final, "Available")["status"] == "True"
    assert condition(final, "ArchiveReady")["status"] == "True"
    assert condition(final, "ScalingActive")["reason"] == "AutoscalerConfigured"
    assert final is not None and final["status"]["observedGeneration"] == 1
    assert final["status"]["readyReplicas"] == 1
    printed = kubectl.ok(
        "get", "im", "resnet", "-n", NAMESPACE, "-o", "jsonpath={.status.phase} {.status.url}"
    )
    assert printed == "Ready http://resnet.ml.svc:8080/predictions/resnet"
    reasons = {event["reason"] for event in _events_for(cluster, "resnet")}
    assert {"Ready", "MinimumReplicasAvailable"} <= reasons


def test_failed_init_container_shows_the_extractors_message(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("badarchive"))
    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/badarchive"), what="Deployment")
    message = "sha256 mismatch: expected 3b1f0d6c, got 9e8d7c6b"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "badarchive-7f9c-abcde",
            "namespace": NAMESPACE,
            "labels": deployment["spec"]["template"]["metadata"]["labels"],
        },
        "spec": deployment["spec"]["template"]["spec"],
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "extract",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "message": message}},
                }
            ],
        },
    }
    cluster.request("POST", PODS, pod)
    wait_for(
        lambda: (
            condition(cluster.get(model_path("badarchive")), "ArchiveReady").get("status")
            == "False"
        ),
        what="ArchiveReady=False",
    )
    model = cluster.get(model_path("badarchive"))
    archive = condition(model, "ArchiveReady")
    assert (archive["reason"], archive["message"]) == ("ArchiveFailed", message)
    assert model is not None and model["status"]["phase"] == "Failed"
    warnings = wait_for(
        lambda: [e for e in _events_for(cluster, "badarchive") if e["reason"] == "ArchiveFailed"],
        what="an ArchiveFailed event",
    )
    assert warnings[0]["type"] == "Warning" and message in warnings[0]["message"]


def test_a_failed_dependency_install_shows_pips_message(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    dependencies = {
        "install": True,
        "indexUrl": "https://pypi.example.com/simple",
        "secretName": "index-login",
    }
    kubectl.ok(
        "apply", "--validate=false", "-f", "-",
        stdin=manifest("needsdeps", dependencies=dependencies),
    )  # fmt: skip
    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/needsdeps"), what="Deployment")
    kubernetes_validate.validate(deployment, "1.30.0", strict=True)
    template = deployment["spec"]["template"]["spec"]
    extract, install = template["initContainers"]
    assert (extract["name"], install["name"]) == ("extract", "install-deps")
    assert install["command"][:3] == ["marserve", "install-deps", "/mnt/models"]
    secret_refs = [e["valueFrom"]["secretKeyRef"] for e in install["env"] if "valueFrom" in e]
    assert secret_refs == [
        {"name": "index-login", "key": "username"},
        {"name": "index-login", "key": "password"},
    ]
    message = (
        "marserve install-deps: requirements file requirements.txt could not be installed: pip "
        "could not install it: ERROR: No matching distribution found for timm==99.0"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "needsdeps-7f9c-abcde",
            "namespace": NAMESPACE,
            "labels": deployment["spec"]["template"]["metadata"]["labels"],
        },
        "spec": template,
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "extract",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": "{}"}},
                },
                {
                    "name": "install-deps",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 2, "message": message}},
                },
            ],
        },
    }
    cluster.request("POST", PODS, pod)
    wait_for(
        lambda: (
            condition(cluster.get(model_path("needsdeps")), "ArchiveReady").get("status") == "False"
        ),
        what="ArchiveReady=False",
    )
    model = cluster.get(model_path("needsdeps"))
    archive = condition(model, "ArchiveReady")
    assert (archive["reason"], archive["message"]) == ("DependencyInstallFailed", message)
    assert model is not None and model["status"]["phase"] == "Failed"
    warnings = wait_for(
        lambda: [
            e for e in _events_for(cluster, "needsdeps") if e["reason"] == "DependencyInstallFailed"
        ],
        what="a DependencyInstallFailed event",
    )
    assert warnings[0]["type"] == "Warning" and "timm==99.0" in warnings[0]["message"]


def test_spec_change_rolls_the_pods(cluster: RunningEmulator, kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("rolling"))
    before = _spec_hash(wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/rolling"), what="Deployment"))
    change = json.dumps({"spec": {"batching": {"maxBatchSize": 16, "maxBatchDelayMs": 5}}})
    kubectl.ok("patch", "im", "rolling", "-n", NAMESPACE, "--type", "merge", "-p", change)
    after = wait_for(
        lambda: (
            _spec_hash(cluster.get(f"{DEPLOYMENTS}/rolling") or {"spec": {}}) != before
            and _spec_hash(cluster.get(f"{DEPLOYMENTS}/rolling") or {})
        ),
        what="a new pod-template spec hash",
    )
    assert after != before
    env = cluster.get(f"{DEPLOYMENTS}/rolling")["spec"]["template"]["spec"]["containers"][0]["env"]  # type: ignore[index]
    assert {"name": "MARSERVE_BATCH_SIZE", "value": "16"} in env
    wait_for(
        lambda: _status(cluster, "rolling").get("observedGeneration") == 2,
        what="observedGeneration 2",
    )


def test_hand_edits_to_the_deployment_are_put_back(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("drift"))
    original = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/drift"), what="the Deployment")
    image = original["spec"]["template"]["spec"]["containers"][0]["image"]
    edit = {"spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "evil"}]}}}}
    kubectl.ok(
        "patch", "deployment", "drift", "-n", NAMESPACE, "--type", "merge", "-p", json.dumps(edit)
    )
    wait_for(
        lambda: (
            (cluster.get(f"{DEPLOYMENTS}/drift") or {})["spec"]["template"]["spec"]["containers"][
                0
            ]["image"]
            == image
        ),
        what="the worker image put back",
    )
    restored = cluster.get(f"{DEPLOYMENTS}/drift")
    assert restored is not None
    assert restored["spec"]["template"] == original["spec"]["template"]


def test_kubectl_scale_sets_replicas_without_autoscaling(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("scaled", autoscaling=None))
    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/scaled"), what="the Deployment")
    assert deployment["spec"]["replicas"] == 2
    wait_for(lambda: cluster.get(f"{PDBS}/scaled"), what="a budget: at most one of two may go")
    kubectl.ok("scale", "im/scaled", "-n", NAMESPACE, "--replicas=3")
    wait_for(
        lambda: (cluster.get(f"{DEPLOYMENTS}/scaled") or {})["spec"].get("replicas") == 3,
        what="3 replicas",
    )
    kubectl.ok("scale", "im/scaled", "-n", NAMESPACE, "--replicas=1")
    wait_for(lambda: cluster.get(f"{PDBS}/scaled") is None, what="the budget removed at 1")
    assert cluster.get(f"{HPAS}/scaled") is None


def test_delete_releases_the_finalizer_and_removes_owned_objects(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("doomed"))
    wait_for(lambda: cluster.get(f"{HPAS}/doomed"), what="the HPA")
    model = wait_for(
        lambda: (
            (cluster.get(model_path("doomed")) or {}).get("metadata", {}).get("finalizers")
            and cluster.get(model_path("doomed"))
        ),
        what="the finalizer",
    )
    assert model["metadata"]["finalizers"] == ["serving.marserve.io/finalizer"]
    kubectl.ok("delete", "im", "doomed", "-n", NAMESPACE, "--wait=true", "--timeout=30s")
    assert cluster.get(model_path("doomed")) is None
    for path in (DEPLOYMENTS, SERVICES, HPAS):
        assert cluster.get(f"{path}/doomed") is None


def test_invalid_spec_is_reported_and_the_operator_carries_on(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    # The API server's schema would refuse this; an old cluster without CEL would not.
    broken = {"minReplicas": 5, "maxReplicas": 2, "metric": "inflight", "target": 4}
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("broken", autoscaling=broken))
    progressing = wait_for(
        lambda: (
            condition(cluster.get(model_path("broken")), "Progressing").get("reason")
            == "InvalidSpec"
            and condition(cluster.get(model_path("broken")), "Progressing")
        ),
        what="an InvalidSpec condition",
    )
    assert "maxReplicas" in progressing["message"]
    assert _status(cluster, "broken")["phase"] == "Failed"
    assert cluster.get(f"{DEPLOYMENTS}/broken") is None
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("healthy"))
    wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/healthy"), what="the next model's Deployment")


def test_restart_mid_way_creates_nothing_twice(
    cluster: RunningEmulator, kubectl: Kubectl, operator: OperatorThread
) -> None:
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("restart"))
    first = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/restart"), what="the Deployment")
    operator.stop()
    try:
        change = json.dumps({"spec": {"workersPerReplica": 2}})
        kubectl.ok("patch", "im", "restart", "-n", NAMESPACE, "--type", "merge", "-p", change)
    finally:
        operator.start()
    wait_for(
        lambda: _spec_hash(cluster.get(f"{DEPLOYMENTS}/restart") or first) != _spec_hash(first),
        what="the change made while stopped applied after the restart",
    )
    creates = [plural for plural in cluster.created("restart") if plural != "inferencemodels"]
    assert sorted(creates) == sorted(set(creates)), f"created twice: {creates}"
    assert "deployments" in creates
    assert cluster.get(f"{DEPLOYMENTS}/restart")["metadata"]["uid"] == first["metadata"]["uid"]  # type: ignore[index]


def test_api_errors_and_a_dropped_watch_are_survived(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    # The first apply is stored but its answer lost (500), the first status write conflicts,
    # the API server throttles once, and every open watch stream is cut.
    cluster.fail(Failure("PATCH", f"{DEPLOYMENTS}/flaky", 500, "InternalError", applied=True))
    cluster.fail(Failure("PATCH", model_path("flaky") + "/status", 409, "Conflict"))
    cluster.fail(Failure("PATCH", f"{SERVICES}/flaky", 429, "TooManyRequests"))
    watches = "/apis/serving.marserve.io/v1alpha1/inferencemodels"
    listed_before = sum(1 for e in cluster.log() if e.path == watches)
    cluster.call(cluster.emulator.drop_watches())
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest("flaky"))
    wait_for(lambda: _status(cluster, "flaky").get("phase"), what="a status despite errors")
    wait_for(lambda: cluster.get(f"{SERVICES}/flaky"), what="the Service after throttling")
    deployments = [d for d in cluster.items(DEPLOYMENTS) if d["metadata"]["name"] == "flaky"]
    assert len(deployments) == 1
    assert deployments[0]["metadata"]["labels"][MODEL_LABEL] == "flaky"
    refused = [e for e in cluster.log() if e.path == f"{SERVICES}/flaky" and e.method == "PATCH"]
    assert len(refused) >= 2  # the throttled apply was retried
    assert cluster.created("flaky").count("deployments") == 1
    assert not cluster.emulator.failures, "every injected error was met"
    assert sum(1 for e in cluster.log() if e.path == watches) > listed_before  # watched again


POD_TROUBLE = {
    "ImagePullError": {
        "containerStatuses": [
            {
                "name": "worker",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull denied"}},
            }
        ]
    },
    "Unschedulable": {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ]
    },
    "WorkerCrashLooping": {
        "containerStatuses": [
            {
                "name": "worker",
                "ready": False,
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "no handler"}},
            }
        ]
    },
}


@pytest.mark.parametrize("reason", sorted(POD_TROUBLE))
def test_pod_trouble_reaches_the_models_status(
    cluster: RunningEmulator, kubectl: Kubectl, reason: str
) -> None:
    name = f"trouble-{reason.lower()}"
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=manifest(name))
    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/{name}"), what="the Deployment")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-abc12",
            "namespace": NAMESPACE,
            "labels": deployment["spec"]["template"]["metadata"]["labels"],
        },
        "spec": deployment["spec"]["template"]["spec"],
        "status": {"phase": "Pending", **POD_TROUBLE[reason]},
    }
    cluster.request("POST", PODS, pod)
    available = wait_for(
        lambda: (
            condition(cluster.get(model_path(name)), "Available").get("reason") == reason
            and condition(cluster.get(model_path(name)), "Available")
        ),
        what=f"Available reason {reason}",
    )
    assert available["status"] == "False" and available["message"]


def test_canary_rollout_and_promotion_with_kubectl(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    canary = {"archive": {"uri": "https://models.example.com/resnet-2.1.mar"}, "trafficPercent": 50}
    kubectl.ok(
        "apply",
        "--validate=false",
        "-f",
        "-",
        stdin=manifest("twins", canary=canary, autoscaling=None, replicas=2),
    )
    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/twins-canary"), what="the canary")
    kubernetes_validate.validate(deployment, "1.30.0", strict=True)
    assert deployment["spec"]["replicas"] == 1
    wait_for(
        lambda: condition(cluster.get(model_path("twins")), "CanaryReady").get("reason"),
        what="the CanaryReady condition",
    )
    report_deployment_ready(cluster, "twins-canary", 1)
    wait_for(
        lambda: condition(cluster.get(model_path("twins")), "CanaryReady").get("status") == "True",
        what="a ready canary",
    )
    both = {"app.kubernetes.io/name": "marserve-worker", MODEL_LABEL: "twins"}
    wait_for(
        lambda: (cluster.get(f"{SERVICES}/twins") or {})["spec"]["selector"] == both,
        what="the Service selecting both revisions",
    )

    promote = {"spec": {"archive": canary["archive"], "canary": None}}
    kubectl.ok(
        "patch", "im", "twins", "-n", NAMESPACE, "--type", "merge", "-p", json.dumps(promote)
    )
    wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/twins-canary") is None, what="the canary gone")
    stable = wait_for(
        lambda: (
            "resnet-2.1.mar" in json.dumps(cluster.get(f"{DEPLOYMENTS}/twins"))
            and cluster.get(f"{DEPLOYMENTS}/twins")
        ),
        what="the stable revision on the promoted archive",
    )
    assert stable["spec"]["replicas"] == 2
    wait_for(lambda: "revisions" not in _status(cluster, "twins"), what="no revisions in status")
