"""kmock 0.8 made to answer reads as the Kubernetes API server does, where kopf, kubectl and the
client library notice: the namespaces path, list kinds and label selectors, 201 on create,
AlreadyExists on a conflict, watch streams (JSON lines that replay only what changed since a
version, and can be dropped), and the discovery of subresources."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import enums, parsing, rendering

_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock reads `/api/v1/namespaces[/NAME]` as a namespace prefix with no resource; it is the
    cluster-scoped `namespaces` resource."""
    parts = path.strip("/").split("/")
    tail = parts[4:]
    if parts[:3] == ["api", "v1", "namespaces"] and tail in ([], ["status"], ["finalize"]):
        name = parts[3] if len(parts) > 3 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, tail[0] if tail else None)
    return _original_parse_path(path)


parsing.parse_path = _parse_path


_DROP = "DROP-WATCH"


def _version(obj: Mapping[str, Any]) -> int:
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(version) if version.isdigit() else 0


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class ConformingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with the API server's answers to reads; `_versions` numbers every
    resourceVersion it hands out, so subclasses stamp writes from the same sequence."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock reads its bundle with a deprecated call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        self._versions = itertools.count(1000)
        # Watch streams are JSON lines; kubectl refuses kmock's application/octet-stream.
        watch = (self.fallback**1)[enums.action.WATCH]
        watch << kmock.headers({"Content-Type": "application/json"}) << self._serve_watch

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError) and exc.status == 409:
            exc = kmock.KubernetesError(409, "AlreadyExists", "the object already exists")
        return await super()._render_error(exc)

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        return rendering.Response(status=201, payload=await super()._serve_create(request))

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        result: dict[str, Any] = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [
                item
                for item in result["items"]
                if _selector_matches(selector, item.get("metadata", {}).get("labels") or {})
            ]
        assert request.resource is not None
        info = self.resources[request.resource]
        group, version = request.resource.group, request.resource.version
        result["apiVersion"] = f"{group}/{version}" if group else version
        result["kind"] = f"{info.kind}List"
        result["metadata"] = {"resourceVersion": str(next(self._versions))}
        return result

    async def _serve_watch(self, request: rendering.Request) -> Any:
        """kmock subscribes to changes only after sending the existing objects, and replays them
        all even when the client asks for changes since a listed resourceVersion; kopf then acts
        on stale copies. Subscribe first, and replay only what changed since that version."""
        yield b""
        assert request.resource is not None
        bus = self._buses[request.resource]
        mark = await bus.mark()
        try:
            since = request.params.get("resourceVersion", "")
            async with self._lock:
                existing = [
                    {"type": "MODIFIED" if since.isdigit() else "ADDED", "object": obj.raw}
                    for (resource, namespace, name), obj in self.objects.items()
                    if not obj.deleted
                    and self._watched(request, resource, namespace, name)
                    and _version(obj.raw) > (int(since) if since.isdigit() else -1)
                ]
            for event in existing:
                yield event
            async for event in bus.stream(since=mark):
                if event.get("type") == _DROP:
                    return
                meta = event.get("object", {}).get("metadata", {})
                if self._watched(
                    request, request.resource, meta.get("namespace"), meta.get("name")
                ):
                    yield event
        finally:
            await bus.unmark(mark)

    @staticmethod
    def _watched(request: rendering.Request, resource: Any, namespace: Any, name: Any) -> bool:
        return bool(
            resource == request.resource
            and (request.namespace is None or namespace == request.namespace)
            and (request.name is None or name == request.name)
        )

    async def drop_watches(self) -> None:
        """End every open watch stream, as an API server restart or a proxy timeout does."""
        for bus in list(self._buses.values()):
            await bus.put({"type": _DROP})

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        result: dict[str, Any] = await super()._serve_version(request)
        if result["groupVersion"].startswith("/"):
            result["groupVersion"] = result["groupVersion"][1:]
        for entry in result["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[])
            if entry["name"].endswith("/scale"):
                entry.update(group="autoscaling", version="v1", kind="Scale")
                entry["verbs"] = ["get", "patch"]
            elif entry["name"].endswith("/status"):
                entry["verbs"] = ["get", "patch"]
        return result
