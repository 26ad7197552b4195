"""The kopf handlers' own rule: one converge of a model at a time, whichever cause started it."""

from __future__ import annotations

import asyncio

import kopf

from marserve_operator import cluster, handlers
from support.operator_fixtures import SETTINGS
from support.operator_harness import NAMESPACE, model_path
from support.reconcile_driver import create_model
from support.running_emulator import RunningEmulator


async def test_two_causes_converge_one_model_one_after_the_other(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    """The model's own cause and a Deployment's each read the model when they start; the second
    must read it only after the first has written, or it may act on a spec already replaced."""
    create_model(api, "serial")
    memo = kopf.Memo(cluster=client, settings=SETTINGS, converging=handlers.ModelLocks())
    mark = len(api.log())
    await asyncio.gather(
        *(
            handlers._converge_live(memo, namespace=NAMESPACE, name="serial", full=True)
            for _ in range(2)
        )
    )
    calls = [(entry.method, entry.path) for entry in api.log()[mark:]]
    reads = [index for index, call in enumerate(calls) if call == ("GET", model_path("serial"))]
    writes = [index for index, (method, _) in enumerate(calls) if method in ("PATCH", "POST")]
    assert len(reads) == 2 and writes
    assert any(reads[0] < index < reads[1] for index in writes), calls


def test_each_model_has_its_own_lock() -> None:
    locks = handlers.ModelLocks()
    assert locks.of("ns", "a") is locks.of("ns", "a")
    assert locks.of("ns", "a") is not locks.of("ns", "b")
    assert locks.of("ns", "a") is not locks.of("other", "a")
    first = locks.of("ns", "a")
    locks.forget("ns", "a")
    assert locks.of("ns", "a") is not first
