"""Fixtures for operator tests: one emulator, one kubectl and one running operator per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from marserve_operator import cluster as kube
from marserve_operator.settings import OperatorSettings
from support.operator_harness import (
    Kubectl,
    OperatorThread,
    connect,
    create_crd,
    install_crd,
    kubeconfig_env,
    start_emulator,
)
from support.reconcile_driver import FAST
from support.running_emulator import RunningEmulator


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator, which KUBECONFIG names while the module's tests run."""
    emulator = start_emulator(tmp_path_factory.mktemp("kube"))
    assert emulator.kubeconfig is not None
    try:
        with kubeconfig_env(emulator.kubeconfig):
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
    create_crd(cluster)
    return cluster


@pytest.fixture
async def client(api: RunningEmulator) -> AsyncIterator[kube.Cluster]:
    """The operator's API client on the emulator, with quick retries."""
    assert api.kubeconfig is not None
    opened = await connect(api.kubeconfig, retry=FAST)
    try:
        yield opened
    finally:
        await opened.close()
