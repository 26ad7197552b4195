"""Fixtures for operator tests: one emulator, one kubectl and one running operator per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from marserve_operator.settings import OperatorSettings
from support.operator_harness import (
    CRD_FILE,
    NAMESPACE,
    Kubectl,
    OperatorThread,
    install_crd,
    kubeconfig_env,
)
from support.running_emulator import RunningEmulator

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator, which KUBECONFIG names while the module's tests run."""
    emulator = RunningEmulator().start()
    kubeconfig = emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    try:
        with kubeconfig_env(kubeconfig):
            for name in ("default", NAMESPACE):
                emulator.request(
                    "POST",
                    "/api/v1/namespaces",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                )
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def kubectl(cluster: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tool = Kubectl(cluster.kubeconfig, tmp_path_factory.mktemp("kubectl"))
    install_crd(cluster, tool)
    return tool


@pytest.fixture(scope="module")
def operator(cluster: RunningEmulator, kubectl: Kubectl) -> Iterator[OperatorThread]:
    running = OperatorThread(settings=OperatorSettings()).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api(cluster: RunningEmulator) -> RunningEmulator:
    """The emulator with the InferenceModel CRD installed, for tests that need no kubectl."""
    cluster.request("POST", CRDS, yaml.safe_load(CRD_FILE.read_text()))
    return cluster
