"""A real cluster from the current kubectl context; every test here skips cleanly without one."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marserve_operator import main
from marserve_operator.settings import OperatorSettings
from support.operator_harness import CRD_FILE, Kubectl, OperatorThread

# Real clusters pull images and schedule pods: allow the defaults, not the emulator's haste.
CLUSTER_TIMING = main.Timing(exit_timeout=2.0)


def _kubectl_binary() -> str | None:
    return shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


@pytest.fixture(scope="session")
def cluster_kubectl(tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    binary = _kubectl_binary()
    if binary is None:
        pytest.skip("kubectl is not installed")
    reachable = subprocess.run(
        [binary, "get", "--raw", "/version", "--request-timeout=5s"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if reachable.returncode != 0:
        pytest.skip(f"no Kubernetes cluster is reachable: {reachable.stderr.strip()[:200]}")
    tool = Kubectl(None, tmp_path_factory.mktemp("kubectl-e2e"))
    tool.ok("apply", "-f", str(CRD_FILE))
    tool.ok(
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/inferencemodels.serving.marserve.io",
    )
    return tool


@pytest.fixture(scope="session")
def e2e_namespace(cluster_kubectl: Kubectl) -> Iterator[str]:
    name = f"marserve-e2e-{uuid.uuid4().hex[:6]}"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cluster_kubectl.ok("apply", "-f", "-", stdin=json.dumps(namespace))
    try:
        yield name
    finally:
        cluster_kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def cluster_operator(e2e_namespace: str) -> Iterator[OperatorThread]:
    settings = dataclasses.replace(
        OperatorSettings.from_env(os.environ), watch_namespaces=(e2e_namespace,)
    )
    running = OperatorThread(settings=settings, timing=CLUSTER_TIMING).start()
    try:
        yield running
    finally:
        running.stop()
