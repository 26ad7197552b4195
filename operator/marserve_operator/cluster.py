"""The operator's one door to the Kubernetes API: kubernetes_asyncio's dynamic client, with the
retries a flaky API server calls for, so it slows reconciliation down instead of crashing it.

Objects go in and come out as plain dicts. Owned objects are written by server-side apply and
statuses by merge patch (never PUT); deletes leave an object's children to the garbage collector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.resource import Resource

FIELD_MANAGER: Final = "marserve-operator"
_RETRYABLE_STATUS: Final = frozenset({409, 429, 500, 502, 503, 504})
_BACKGROUND: Final = {
    "kind": "DeleteOptions",
    "apiVersion": "v1",
    "propagationPolicy": "Background",
}

JsonObject = dict[str, Any]
_T = TypeVar("_T")


class ApiError(Exception):
    """An answer from the API server that is not a success (or no answer at all: status 0)."""

    def __init__(
        self, status: int, reason: str, message: str, *, retry_after: str | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth another try: throttling, server trouble, lost connections, write conflicts."""
        return self.status == 0 or self.status in _RETRYABLE_STATUS


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: `first_delay` doubling up to `max_delay`, `attempts` tries in all."""

    attempts: int = 6
    first_delay: float = 0.2
    max_delay: float = 5.0
    request_timeout: float = 30.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        return min(self.first_delay * 2.0**attempt, self.max_delay)


def api_error(exc: ApiException | aiohttp.ClientError | TimeoutError) -> ApiError:
    """The server's Status reason and message, or status 0 when no answer came."""
    if not isinstance(exc, ApiException):
        return ApiError(0, type(exc).__name__, str(exc) or "connection lost")
    try:
        payload = json.loads(exc.body or "")
    except (TypeError, ValueError):
        payload = None
    if isinstance(payload, dict) and payload.get("kind") == "Status":
        reason, message = str(payload.get("reason") or ""), str(payload.get("message") or "")
    else:
        reason, message = str(exc.reason or ""), str(exc.body or "")[:500]
    headers: Mapping[str, str] = exc.headers or {}
    retry_after = headers.get("Retry-After")
    return ApiError(int(exc.status or 0), reason, message, retry_after=retry_after)


def plural(kind: str) -> str:
    """The resource name of a kind; every kind the operator touches follows the simple rule."""
    return kind.lower() + "s"


def resource(api_version: str, kind: str) -> Resource:
    """The dynamic client's description of a namespaced kind with a status subresource, made
    here rather than by discovery: the kinds are known, and a kind an API server does not serve
    is then a plain 404 instead of a fresh discovery of the whole API on every miss."""
    group, _, version = api_version.rpartition("/")
    name = plural(kind)
    status = {"kind": kind, "name": f"{name}/status", "namespaced": True}
    return Resource(
        prefix="apis" if group else "api",
        group=group or None,
        api_version=version,
        kind=kind,
        namespaced=True,
        name=name,
        subresources={"status": status},
    )


def _answer(result: Any) -> JsonObject:
    """The dynamic client hands error answers back as Status objects instead of raising."""
    body: JsonObject = dict(result.to_dict()) if hasattr(result, "to_dict") else dict(result or {})
    if body.get("kind") == "Status" and body.get("status") == "Failure":
        code = int(body.get("code") or 0)
        raise ApiError(code, str(body.get("reason") or ""), str(body.get("message") or ""))
    return body


class Cluster:
    """The API calls reconcile makes; one per operator process. It is configured at login, from
    the configuration kopf logged in with, and again at each later login."""

    def __init__(self, *, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self._api: ApiClient | None = None
        self._dynamic: DynamicClient | None = None

    async def configure(self, configuration: Configuration) -> None:
        await self.close()
        self._api = ApiClient(configuration)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
        self._api, self._dynamic = None, None

    def _client(self) -> DynamicClient:
        if self._api is None:
            raise ApiError(0, "NotLoggedIn", "the operator has not logged in to the API yet")
        if self._dynamic is None:
            self._dynamic = DynamicClient(self._api)  # not awaited: no discovery is needed
        return self._dynamic

    async def _call(self, operation: Callable[[DynamicClient], Awaitable[_T]]) -> _T:
        """One API operation, retried while the failure is transient."""
        attempt = 0
        while True:
            try:
                try:
                    return await operation(self._client())
                except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
                    raise api_error(exc) from exc
            except ApiError as exc:
                if not exc.retryable or attempt + 1 >= self.retry.attempts:
                    raise
                await asyncio.sleep(self.retry.delay(attempt, exc.retry_after))
                attempt += 1

    async def _unless_missing(
        self, operation: Callable[[DynamicClient], Awaitable[_T]]
    ) -> _T | None:
        """`_call`, with None for a 404: the object, its kind or its group is not there."""
        try:
            return await self._call(operation)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def get(
        self, api_version: str, kind: str, *, namespace: str | None, name: str
    ) -> JsonObject | None:
        """The object, or None when it (or its kind) does not exist."""

        async def read(client: DynamicClient) -> JsonObject:
            found = await client.get(
                resource(api_version, kind),
                name=name,
                namespace=namespace,
                _request_timeout=self.retry.request_timeout,
            )
            return _answer(found)

        return await self._unless_missing(read)

    async def list(
        self, api_version: str, kind: str, *, namespace: str, label_selector: str
    ) -> list[JsonObject]:
        async def read(client: DynamicClient) -> list[JsonObject]:
            found = await client.get(
                resource(api_version, kind),
                namespace=namespace,
                label_selector=label_selector,
                _request_timeout=self.retry.request_timeout,
            )
            return list(_answer(found).get("items") or [])

        return await self._call(read)

    async def apply(self, obj: Mapping[str, Any]) -> JsonObject:
        """Server-side apply as the operator's field manager, taking over conflicting fields:
        the object ends up as `obj` says, whoever changed it since."""

        async def write(client: DynamicClient) -> JsonObject:
            applied = await client.server_side_apply(
                resource(obj["apiVersion"], obj["kind"]),
                body=dict(obj),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                _request_timeout=self.retry.request_timeout,
            )
            return _answer(applied)

        return await self._call(write)

    async def patch_status(
        self, api_version: str, kind: str, *, namespace: str, name: str, status: JsonObject
    ) -> JsonObject:
        """A merge patch of the status subresource."""

        async def write(client: DynamicClient) -> JsonObject:
            patched = await client.patch(
                resource(api_version, kind).subresources["status"],
                body={"status": status},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                _request_timeout=self.retry.request_timeout,
            )
            return _answer(patched)

        return await self._call(write)

    async def delete(self, api_version: str, kind: str, *, namespace: str, name: str) -> bool:
        """Delete in the background (children go by garbage collection); False if already gone."""

        async def remove(client: DynamicClient) -> bool:
            _answer(
                await client.delete(
                    resource(api_version, kind),
                    name=name,
                    namespace=namespace,
                    body=_BACKGROUND,
                    _request_timeout=self.retry.request_timeout,
                )
            )
            return True

        return await self._unless_missing(remove) or False

    async def serves(self, group_version: str) -> bool:
        """Whether the API server serves this group/version now (asked each time, not cached)."""

        async def ask(client: DynamicClient) -> bool:
            path = f"/apis/{group_version}"
            _answer(await client.request("get", path, _request_timeout=self.retry.request_timeout))
            return True

        return await self._unless_missing(ask) or False
