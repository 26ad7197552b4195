"""Archive storage through the operator against the emulated API server: an Azure Blob archive
read with workload identity and unpacked into the shared cache. kubectl applies the model; the
test plays kubelet, writing pods whose init containers left cache-hit records."""

from __future__ import annotations

from typing import Any

import pytest

from marserve.contract import ExtractedArchive
from support.operator_harness import (
    DEPLOYMENTS,
    NAMESPACE,
    PODS,
    Kubectl,
    condition,
    manifest,
    model_path,
    report_deployment_ready,
    wait_for,
)
from support.running_emulator import RunningEmulator

pytestmark = pytest.mark.usefixtures("operator")

DIGEST = "d" * 64
ARCHIVE = {
    "uri": "az://models/resnet/resnet-18.mar",
    "sha256": DIGEST,
    "identity": "workload",
    "cache": {"claimName": "model-cache"},
}


def _pod(deployment: dict[str, Any], name: str, *, cache_hit: bool) -> dict[str, Any]:
    record = ExtractedArchive(model_name="resnet", model_version="1.0", cache_hit=cache_hit)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": deployment["spec"]["template"]["metadata"]["labels"],
        },
        "spec": deployment["spec"]["template"]["spec"],
        "status": {
            "phase": "Running",
            "initContainerStatuses": [
                {
                    "name": "extract",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": record.to_json()}},
                }
            ],
            "containerStatuses": [
                {"name": "worker", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        },
    }


def test_workload_identity_and_shared_cache_reach_the_pods_and_the_status(
    cluster: RunningEmulator, kubectl: Kubectl
) -> None:
    stdin = manifest("cached", archive=ARCHIVE, serviceAccountName="model-reader")
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=stdin)
    deployment = wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/cached"), what="the Deployment")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    pod_spec = template["spec"]
    assert pod_spec["serviceAccountName"] == "model-reader"
    (extract,) = pod_spec["initContainers"]
    assert extract["command"][3:5] == [f"/mnt/archive-cache/{DIGEST}", "--shared"]
    assert {"name": "MARSERVE_ARCHIVE_IDENTITY", "value": "workload"} in extract["env"]
    (cache,) = [v for v in pod_spec["volumes"] if v["name"] == "archive-cache"]
    assert cache["persistentVolumeClaim"]["claimName"] == "model-cache"

    cluster.request("POST", PODS, _pod(deployment, "cached-1", cache_hit=False))
    cluster.request("POST", PODS, _pod(deployment, "cached-2", cache_hit=True))
    report_deployment_ready(cluster, "cached", 2)
    archive = wait_for(
        lambda: (
            condition(cluster.get(model_path("cached")), "ArchiveReady")
            .get("message", "")
            .endswith("2 pods")
            and condition(cluster.get(model_path("cached")), "ArchiveReady")
        ),
        what="ArchiveReady with the cache's use",
    )
    assert archive["message"] == "the archive is unpacked; shared cache: hit in 1 of 2 pods"
