"""kopf handlers: thin adapters from kopf's causes to the one reconcile path.

Every InferenceModel cause (create, update, resume, a periodic resync) converges the model;
changes to the Deployments and Pods it owns converge it again or refresh its status, so status
follows the cluster and edits made by hand are put back. API trouble becomes a kopf retry.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any, Final

import kopf

from marserve_operator import cluster, reconcile
from marserve_operator.resources.metadata import MODEL_LABEL
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import SpecError

REGISTRY: Final = kopf.OperatorRegistry()
_MODELS: Final = (reconcile.GROUP, reconcile.VERSION, reconcile.PLURAL)
# A resync that catches drift in objects nobody watches (Service, autoscaler, budget).
RESYNC_SECONDS: Final = 300.0
RETRY_SECONDS: Final = 5.0


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ModelLocks:
    """One lock per model. A model's own causes and those of the Deployment and Pods it owns are
    separate kopf handlers that may run at once; each reads the model when it starts, so without
    the lock a converge that read the spec before an edit could prune what the converge after
    the edit had just created (seen as an HTTPScaledObject deleted right after a switch to scale
    from zero). Under the lock each converge reads the model after the one before it finished."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def of(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)


def _client(memo: Any) -> cluster.Cluster:
    client: cluster.Cluster = memo.cluster
    return client


def _settings(memo: Any) -> OperatorSettings:
    settings: OperatorSettings = memo.settings
    return settings


def _report(outcome: reconcile.Outcome, body: Mapping[str, Any], logger: kopf.Logger) -> None:
    for action in outcome.actions:
        logger.info("%s", action)
    for transition in outcome.events:
        kopf.event(
            body,  # type: ignore[arg-type]
            type=transition.type,
            reason=transition.reason,
            message=transition.message,
        )


async def _converge_live(
    memo: Any, *, namespace: str, name: str, full: bool
) -> tuple[reconcile.Owner, reconcile.Outcome] | None:
    """Converge (or only refresh the status of) the model as it is now: the body a cause came
    with may be older than a status written since, which would repeat that status's events.
    One at a time per model (`ModelLocks`)."""
    client = _client(memo)
    locks: ModelLocks = memo.converging
    async with locks.of(namespace, name):
        owner = await reconcile.fetch_owner(client, namespace=namespace, name=name)
        if owner is None:
            return None
        if full:
            outcome = await reconcile.converge(
                client, owner=owner, settings=_settings(memo), now=_now()
            )
        else:
            model = reconcile.parse(owner)
            outcome = await reconcile.refresh_status(
                client, owner=owner, model=model, settings=_settings(memo), now=_now()
            )
    return owner, outcome


@kopf.on.resume(*_MODELS, registry=REGISTRY)
@kopf.on.create(*_MODELS, registry=REGISTRY)
@kopf.on.update(*_MODELS, registry=REGISTRY)
@kopf.timer(*_MODELS, interval=RESYNC_SECONDS, idle=RESYNC_SECONDS, registry=REGISTRY)
async def converge_model(
    name: str, namespace: str | None, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    try:
        result = await _converge_live(memo, namespace=namespace or "", name=name, full=True)
    except cluster.ApiError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=RETRY_SECONDS) from exc
    if result is not None:
        _report(result[1], result[0].body, logger)


@kopf.on.delete(*_MODELS, registry=REGISTRY)
async def remove_model(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    owner = reconcile.Owner.from_body(body)
    try:
        removed = await reconcile.remove(_client(memo), owner)
    except cluster.ApiError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=RETRY_SECONDS) from exc
    memo.converging.forget(owner.namespace, owner.name)
    for action in removed:
        logger.info("%s", action)


async def _follow(
    *,
    memo: Any,
    namespace: str | None,
    labels: Mapping[str, str],
    full: bool,
    logger: kopf.Logger,
) -> None:
    """React to a change in an object a model owns; its own handler retries failures."""
    name = labels.get(MODEL_LABEL)
    if not name or not namespace:
        return
    try:
        result = await _converge_live(memo, namespace=namespace, name=name, full=full)
    except cluster.ApiError as exc:
        logger.warning("could not follow %s/%s: %s", namespace, name, exc)
        return
    except SpecError:  # the model's own handler reports an invalid spec
        return
    if result is not None:
        _report(result[1], result[0].body, logger)


@kopf.on.event("apps", "v1", "deployments", labels={MODEL_LABEL: kopf.PRESENT}, registry=REGISTRY)
async def deployment_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    await _follow(memo=memo, namespace=namespace, labels=labels, full=True, logger=logger)


@kopf.on.event("", "v1", "pods", labels={MODEL_LABEL: kopf.PRESENT}, registry=REGISTRY)
async def pod_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    await _follow(memo=memo, namespace=namespace, labels=labels, full=False, logger=logger)
