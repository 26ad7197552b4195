"""Drives the reconcile path directly against the emulator: make a model, read it back as an
Owner, converge it, as the operator's handlers would."""

from __future__ import annotations

from typing import Any

from marserve_operator import cluster, reconcile
from marserve_operator.settings import OperatorSettings
from support.operator_fixtures import SETTINGS
from support.operator_harness import MODELS, NAMESPACE, model_path
from support.running_emulator import RunningEmulator

NOW = "2026-11-22T01:00:00Z"
FAST = cluster.RetryPolicy(attempts=4, first_delay=0.01, max_delay=0.05, request_timeout=5.0)


def create_model(api: RunningEmulator, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": reconcile.API_VERSION,
        "kind": reconcile.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"archive": {"uri": "https://models.example.com/m.mar"}, "replicas": 2, **spec},
    }
    api.request("POST", MODELS, body)


def owner(api: RunningEmulator, name: str) -> reconcile.Owner:
    body = api.get(model_path(name))
    assert body is not None
    return reconcile.Owner.from_body(body)


async def converge(
    api: RunningEmulator,
    client: cluster.Cluster,
    name: str,
    settings: OperatorSettings = SETTINGS,
) -> reconcile.Outcome:
    return await reconcile.converge(client, owner=owner(api, name), settings=settings, now=NOW)
