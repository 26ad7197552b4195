"""The operator's one door to the Kubernetes API.

A small aiohttp client: JSON in and out, PATCH (merge or JSON patch) and never PUT, and retries
with back-off on conflicts, throttling, server errors and lost connections, so a flaky API server
slows reconciliation down instead of crashing it. Everything above this module passes plain dicts.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

SERVER_ENV: Final = "MARSERVE_KUBE_SERVER"
_SA_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_RETRYABLE_STATUS: Final = frozenset({409, 429, 500, 502, 503, 504})

JsonObject = dict[str, Any]


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

    def retryable(self, method: str) -> bool:
        """Worth another try: throttling, server trouble, lost connections and write conflicts.
        A 409 to a create means the object exists, which is an answer, not a race."""
        if self.status == 409:
            return method != "POST" and self.reason != "AlreadyExists"
        return self.status == 0 or self.status in _RETRYABLE_STATUS


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate; a token file is re-read on each request
    because in-cluster tokens rotate."""

    server: str
    token: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    # A plain test API server named by MARSERVE_KUBE_SERVER: no credentials, no TLS checks.
    test_server: bool = False

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.insecure or not self.server.startswith("https://"):
            return False
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def connection_from_env(environ: Mapping[str, str]) -> Connection:
    """The test server when MARSERVE_KUBE_SERVER is set, else in-cluster, else the kubeconfig."""
    if environ.get(SERVER_ENV):
        return Connection(server=environ[SERVER_ENV].rstrip("/"), insecure=True, test_server=True)
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if host and port and (_SA_DIR / "token").exists():
        host = f"[{host}]" if ":" in host else host
        return Connection(
            server=f"https://{host}:{port}",
            token_file=str(_SA_DIR / "token"),
            ca_file=str(_SA_DIR / "ca.crt"),
        )
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException as exc:
        raise ValueError(f"no Kubernetes API to talk to: {' '.join(str(exc).split())}") from None
    authorization = str(configuration.api_key.get("authorization", "") or "")
    return Connection(
        server=configuration.host.rstrip("/"),
        token=authorization.removeprefix("Bearer ").strip() or None,
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        insecure=not configuration.verify_ssl,
    )


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


def plural(kind: str) -> str:
    """The resource name of a kind; every kind the operator touches follows the simple rule."""
    return kind.lower() + "s"


def path_of(
    api_version: str,
    kind: str,
    *,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or an object: core kinds under /api, the rest under /apis."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural(kind))
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def path_for(obj: Mapping[str, Any], *, subresource: str | None = None) -> str:
    """The REST path of an object given as a manifest."""
    meta = obj["metadata"]
    return path_of(
        obj["apiVersion"],
        obj["kind"],
        namespace=meta.get("namespace"),
        name=meta["name"],
        subresource=subresource,
    )


class KubeClient:
    """JSON requests against the API server with retries; one per operator process."""

    def __init__(
        self, connection: Connection, *, retry: RetryPolicy, session: aiohttp.ClientSession
    ) -> None:
        self._connection = connection
        self._retry = retry
        self._session = session

    @classmethod
    def open(cls, connection: Connection, *, retry: RetryPolicy | None = None) -> KubeClient:
        policy = retry or RetryPolicy()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=connection.ssl_context()),
            timeout=aiohttp.ClientTimeout(total=policy.request_timeout),
        )
        return cls(connection, retry=policy, session=session)

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call, retried while the failure is transient; raises ApiError otherwise."""
        attempt = 0
        while True:
            try:
                return await self._once(
                    method, path, body=body, content_type=content_type, params=params
                )
            except ApiError as exc:
                if not exc.retryable(method) or attempt + 1 >= self._retry.attempts:
                    raise
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))
                attempt += 1

    async def _once(
        self,
        method: str,
        path: str,
        *,
        body: Any,
        content_type: str,
        params: Mapping[str, str] | None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        token = self._connection.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self._connection.server + path
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, params=params
            ) as response:
                text = await response.text()
                if response.status < 400:
                    return json.loads(text) if text else None
                raise _error_from(response.status, text, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, type(exc).__name__, str(exc) or "connection lost") from exc

    async def get(self, path: str) -> JsonObject | None:
        """The object, or None when it does not exist."""
        try:
            result: JsonObject = await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def list(self, path: str, *, label_selector: str | None = None) -> list[JsonObject]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, params=params)
        return list(result.get("items") or [])

    async def create(self, path: str, obj: Mapping[str, Any]) -> JsonObject:
        result: JsonObject = await self.request("POST", path, body=obj)
        return result

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JsonObject:
        result: JsonObject = await self.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        return result

    async def json_patch(self, path: str, operations: Sequence[Mapping[str, Any]]) -> JsonObject:
        result: JsonObject = await self.request(
            "PATCH", path, body=list(operations), content_type="application/json-patch+json"
        )
        return result

    async def delete(self, path: str) -> bool:
        """Delete in the background (children go by garbage collection); False if already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def serves(self, group_version: str) -> bool:
        """Whether the API server serves this group/version (discovery)."""
        return await self.get(f"/apis/{group_version}") is not None


def _error_from(status: int, text: str, retry_after: str | None) -> ApiError:
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("kind") == "Status":
        reason, message = str(payload.get("reason") or ""), str(payload.get("message") or "")
    else:
        reason, message = "", text[:500]
    return ApiError(status, reason, message, retry_after=retry_after)
