"""The operator scenario on a real cluster (kind, k3d or any current kubectl context): what the
emulator cannot show (garbage collection, the status and scale subresources, real controllers).

MARSERVE_E2E_ARCHIVE and MARSERVE_E2E_IMAGE name an archive and worker image the cluster can
fetch; with both set the model must reach Ready, otherwise the test checks that the failure is
reported with a reason instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from marserve_operator.resources.metadata import SPEC_HASH_ANNOTATION
from support.operator_harness import EXAMPLE_MANIFEST, Kubectl, OperatorThread, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("cluster_operator")]

ARCHIVE = os.environ.get("MARSERVE_E2E_ARCHIVE")
IMAGE = os.environ.get("MARSERVE_E2E_IMAGE")


def _eventually(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """A real cluster pulls images and schedules pods: poll once a second."""
    return wait_for(check, timeout=timeout, what=what, interval=1)


def _get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def _manifest(namespace: str) -> str:
    data = yaml.safe_load(EXAMPLE_MANIFEST)
    data["metadata"] = {"name": "e2e", "namespace": namespace}
    spec = data["spec"]
    spec.pop("autoscaling")  # the scale subresource is exercised below
    spec["replicas"] = 1
    spec["accelerator"] = {"type": "none"}
    spec["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}}
    spec.pop("auth")
    spec["archive"] = {"uri": ARCHIVE or "https://models.example.com/resnet-2.0.mar"}
    if IMAGE:
        spec["image"] = IMAGE
    return yaml.safe_dump(data)


def test_model_life_cycle_on_a_real_cluster(
    cluster_kubectl: Kubectl, e2e_namespace: str, cluster_operator: OperatorThread
) -> None:
    kubectl, ns = cluster_kubectl, e2e_namespace
    kubectl.ok("apply", "-f", "-", stdin=_manifest(ns))
    model = _eventually(lambda: _get(kubectl, ns, "im", "e2e"), timeout=30, what="the model")
    deployment = _eventually(
        lambda: _get(kubectl, ns, "deployment", "e2e"), timeout=60, what="the Deployment"
    )
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == model["metadata"]["uid"]
    assert _get(kubectl, ns, "service", "e2e") is not None

    status = _eventually(
        lambda: ((_get(kubectl, ns, "im", "e2e") or {}).get("status") or {}).get("conditions"),
        timeout=60,
        what="status conditions",
    )
    assert {c["type"] for c in status} >= {"ArchiveReady", "Available", "Progressing"}
    # With a real archive and image the model must serve; without, it must say why not.
    settled = {"Ready"} if ARCHIVE and IMAGE else {"Failed", "Pending", "Extracting", "Loading"}

    def phase() -> str | None:
        found = ((_get(kubectl, ns, "im", "e2e") or {}).get("status") or {}).get("phase")
        return found if found in settled else None

    _eventually(phase, timeout=300, what=f"a phase in {sorted(settled)}")

    before = deployment["spec"]["template"]["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    change = json.dumps({"spec": {"batching": {"maxBatchSize": 4, "maxBatchDelayMs": 10}}})
    kubectl.ok("patch", "im", "e2e", "-n", ns, "--type", "merge", "-p", change)
    _eventually(
        lambda: (
            (_get(kubectl, ns, "deployment", "e2e") or deployment)["spec"]["template"]["metadata"][
                "annotations"
            ][SPEC_HASH_ANNOTATION]
            != before
        ),
        timeout=60,
        what="a new spec hash",
    )

    kubectl.ok("scale", "deployment/e2e", "-n", ns, "--replicas=3")
    _eventually(
        lambda: (_get(kubectl, ns, "deployment", "e2e") or {}).get("spec", {}).get("replicas") == 1,
        timeout=60,
        what="the hand-made scale put back",
    )
    kubectl.ok("scale", "im/e2e", "-n", ns, "--replicas=2")
    _eventually(
        lambda: (_get(kubectl, ns, "deployment", "e2e") or {}).get("spec", {}).get("replicas") == 2,
        timeout=60,
        what="replicas from the scale subresource",
    )

    kubectl.ok("delete", "im", "e2e", "-n", ns, "--wait=true", "--timeout=120s")
    _eventually(
        lambda: _get(kubectl, ns, "deployment", "e2e") is None,
        timeout=120,
        what="the Deployment removed with its model",
    )
