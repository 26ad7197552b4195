"""A Kubernetes API emulator for operator tests: kmock 0.8 plus the fixes that kopf, kubectl and
the client library need (object metadata, list kinds, 201 on create, CRD registration, label
selectors, the scale subresource, server-side apply), served from its own thread so tests stay
synchronous and reached through an ordinary kubeconfig file."""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import json
import threading
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import yaml
from kmock._internal import dicts, enums, parsing, rendering

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
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# Never owned by an applier: the server sets them, or they name the object.
_SERVER_FIELDS = frozenset(
    {"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "status"}
)

FieldPath = tuple[str, ...]


def _field_paths(obj: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """The leaf fields an applied object sets; lists count as one field each (atomic)."""
    paths: set[FieldPath] = set()
    for key, value in obj.items():
        if key in _SERVER_FIELDS and prefix in {(), ("metadata",)}:
            continue
        if isinstance(value, Mapping) and value:
            paths |= _field_paths(value, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def _fields_v1(paths: set[FieldPath]) -> dict[str, Any]:
    """Field paths in the API server's managedFields notation ({"f:spec": {"f:replicas": {}}})."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def _paths_of(fields: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    for key, value in fields.items():
        path = (*prefix, key.removeprefix("f:"))
        paths |= _paths_of(value, path) if value else {path}
    return paths


def _merged(stored: Any, applied: Any) -> Any:
    """Maps merge key by key; anything else, lists included, is replaced by the applied value."""
    if isinstance(stored, Mapping) and isinstance(applied, Mapping):
        result = dict(stored)
        for key, value in applied.items():
            result[key] = _merged(stored.get(key), value)
        return result
    return copy.deepcopy(applied)


def _remove(obj: dict[str, Any], path: FieldPath) -> None:
    node: Any = obj
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _version(obj: Mapping[str, Any]) -> int:
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(version) if version.isdigit() else 0


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


@dataclass
class Failure:
    """An error the emulator answers to the next matching requests: `applied` ones take effect
    first (an answer lost on the way back), the others are refused (a conflict, an outage)."""

    method: str
    path: str
    status: int
    reason: str
    times: int = 1
    applied: bool = False


@dataclass(frozen=True)
class Logged:
    """One request, kept small: kmock's own history makes every request slower as it grows."""

    method: str
    path: str
    kind: str | None
    name: str | None
    agent: str = ""
    watch: bool = False


class KubeEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with the API server behaviour our tests depend on."""

    # kmock matches each request against its whole history; keep only a short tail of it.
    _history_kept = 4

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock reads its bundle with a deprecated call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        self.log: list[Logged] = []
        self._versions = itertools.count(1000)
        # Watch streams are JSON lines; kubectl refuses kmock's application/octet-stream.
        watch = (self.fallback**1)[enums.action.WATCH]
        watch << kmock.headers({"Content-Type": "application/json"}) << self._serve_watch
        self.failures: list[Failure] = []
        # Every object made, by a create or by an apply: (resource plural, namespace, name).
        self.created: list[tuple[str, str | None, str]] = []

    def fail(self, failure: Failure) -> None:
        self.failures.append(failure)

    def _take_failure(self, request: rendering.Request) -> Failure | None:
        for failure in self.failures:
            if failure.method == request.method.value.upper() and failure.path == request.url.path:
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure
        return None

    def stored(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        del self._requests[: -self._history_kept]
        data = request.data if isinstance(request.data, dict) else {}
        meta = data.get("metadata") or {}
        self.log.append(
            Logged(
                request.method.value.upper(),
                request.url.path,
                data.get("kind"),
                meta.get("name"),
                agent=request.headers.get("User-Agent", ""),
                watch=request.params.get("watch") == "true",
            )
        )
        failure = self._take_failure(request)
        if failure is not None and not failure.applied:
            return self._status(failure)
        response = await self._handle_request(request)
        return self._status(failure) if failure is not None else response

    @staticmethod
    def _status(failure: Failure) -> aiohttp.web.StreamResponse:
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": failure.status,
            "reason": failure.reason,
            "message": f"injected {failure.status} {failure.reason}",
        }
        return aiohttp.web.json_response(body, status=failure.status)

    async def _handle_request(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.subresource == "scale":
            return await self._handle_scale(request)
        if request.method.value.upper() == "PATCH" and request.headers.get(
            "Content-Type", ""
        ).startswith(APPLY_CONTENT_TYPE):
            return await self._apply(request)
        if request.resource is not None and request.action == enums.action.CREATE:
            self._stamp_create(request)
        elif request.resource is not None and request.action == enums.action.UPDATE:
            self._stamp_update(request)
        response = await super()._handle(request)
        if request.action == enums.action.CREATE and response.status == 201:
            self._register_crd(request)
        return response

    def _stamp_create(self, request: rendering.Request) -> None:
        if not isinstance(request.data, dict):  # e.g. a protobuf body: not emulated
            raise kmock.KubernetesError(415, "UnsupportedMediaType", "send JSON")
        meta = request.data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(next(self._versions))
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        self.created.append((request.resource.plural, meta.get("namespace"), meta.get("name")))
        if request.resource.plural == "customresourcedefinitions":  # served at once: established
            names = request.data.get("spec", {}).get("names", {})
            conditions = [{"type": t, "status": "True"} for t in ("NamesAccepted", "Established")]
            request.data["status"] = {"acceptedNames": names, "conditions": conditions}

    def _stamp_update(self, request: rendering.Request) -> None:
        current = self.stored(request)
        if current is None:
            return
        data = request.data
        if request.subresource == "status":  # the status subresource changes status only
            status = data.get("status") if isinstance(data, dict) else None
            data = {"status": status}
            request.data.clear()
            request.data.update(data)
        try:
            changed = dicts.patch_dict(copy.deepcopy(current), copy.deepcopy(data))
        except jsonpatch.JsonPatchException as exc:  # e.g. a failed resourceVersion test
            raise kmock.KubernetesError(422, "Invalid", str(exc)) from None
        stamp = {"resourceVersion": str(next(self._versions))}
        if changed.get("spec") != current.get("spec"):
            stamp["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if isinstance(data, list):
            data.extend(
                {"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items()
            )
        else:
            meta = data.get("metadata") or {}
            data["metadata"] = {**meta, **stamp}

    async def _apply(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """Server-side apply, simplified. Each applier (field manager) owns the fields of its last
        applied object, recorded in metadata.managedFields; lists are atomic (owned and replaced
        whole, where the API server merges some by key); conflicts with other writers are always
        won by the applier (the operator applies with force), and writes that are not applies
        own nothing. An apply creates a missing object, merges into a stored one, removes the
        fields the same manager applied before but no longer does, and changes nothing
        (no new resourceVersion, no watch event) when the result is what is stored."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise kmock.KubernetesError(422, "Invalid", "fieldManager is required for apply")
        if request.resource is None or request.name is None or not isinstance(request.data, dict):
            raise kmock.KubernetesError(400, "BadRequest", "apply a whole object by name")
        applied = copy.deepcopy(request.data)
        owned = _field_paths(applied)
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": applied.get("apiVersion"),
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_v1(owned),
        }
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            current = self.stored(request)
            if current is None:
                result = applied
                meta = result.setdefault("metadata", {})
                if request.namespace:
                    meta["namespace"] = request.namespace
                meta.update(
                    uid=str(uuid.uuid4()),
                    resourceVersion=str(next(self._versions)),
                    creationTimestamp=_now(),
                    generation=1,
                    managedFields=[entry],
                )
                event, status = "ADDED", 201
                self.created.append((request.resource.plural, request.namespace, request.name))
            else:
                managers = current["metadata"].get("managedFields") or []
                before = next((m for m in managers if m.get("manager") == manager), None)
                result = _merged(current, applied)
                for path in _paths_of((before or {}).get("fieldsV1") or {}) - owned:
                    _remove(result, path)
                others = [m for m in managers if m.get("manager") != manager]
                result["metadata"]["managedFields"] = [*others, entry]
                if result == current:
                    return aiohttp.web.json_response(current)
                stamp: dict[str, Any] = {"resourceVersion": str(next(self._versions))}
                if result.get("spec") != current.get("spec"):
                    stamp["generation"] = int(current["metadata"].get("generation", 1)) + 1
                result["metadata"].update(stamp)
                event, status = "MODIFIED", 200
            self.objects[key] = result
            event_object = copy.deepcopy(result)
            await self._buses[request.resource].put({"type": event, "object": event_object})
        return aiohttp.web.json_response(result, status=status)

    def _register_crd(self, request: rendering.Request) -> None:
        """Applying a CRD serves its resource, as the API server does."""
        if request.resource is None or request.resource.plural != "customresourcedefinitions":
            return
        spec = request.data.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            key = f"{spec['group']}/{version['name']}/{names['plural']}"
            subresources = set(version.get("subresources", {}))
            self.resources[key] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                shortnames=set(names.get("shortNames", [])),
                namespaced=spec.get("scope") == "Namespaced",
                verbs={"get", "list", "watch", "create", "patch", "delete"},
                subresources=subresources,
            )

    async def _handle_scale(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """The scale subresource reads and writes the replicas path the CRD declares."""
        current = self.stored(request)
        if request.action == enums.action.UPDATE and current is not None:
            replicas = (request.data or {}).get("spec", {}).get("replicas")
            generation = int(current["metadata"].get("generation", 1))
            if replicas != current.get("spec", {}).get("replicas"):
                generation += 1
            stamp = {
                "spec": {"replicas": replicas},
                "metadata": {
                    "resourceVersion": str(next(self._versions)),
                    "generation": generation,
                },
            }
            async with self._lock:
                stored = self.objects[request.resource, request.namespace, request.name]
                stored.patch(stamp)
                event = {"type": "MODIFIED", "object": stored.raw}
                await self._buses[request.resource].put(event)
        current = self.stored(request)
        if current is None:
            raise kmock.KubernetesObjectNotFoundError()
        status = current.get("status", {})
        scale = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: current["metadata"][k] for k in ("name", "namespace", "uid")},
            "spec": {"replicas": current.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": status.get("selector")},
        }
        return aiohttp.web.json_response(scale)

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


class ApiError(Exception):
    """An HTTP error answered by the emulator, kept with its status for assertions."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status


class RunningEmulator:
    """The emulator served on 127.0.0.1 from a thread with its own event loop, plus a small
    synchronous client so tests can act as the cluster's controllers would."""

    def __init__(self) -> None:
        self.emulator = KubeEmulator()
        self.url = ""
        self.kubeconfig: Path | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> RunningEmulator:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self

    def write_kubeconfig(self, path: Path) -> Path:
        """An ordinary kubeconfig whose current context is this emulator, which asks for no
        credentials; kopf, the client library and kubectl all read it as they would a cluster's."""
        cluster = {"name": "emulator", "cluster": {"server": self.url}}
        context = {"name": "emulator", "context": {"cluster": "emulator", "user": "anyone"}}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": "anyone", "user": {}}],
            "contexts": [context],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config))
        self.kubeconfig = path
        return path

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the emulator's loop (e.g. to add a reaction) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/merge-patch+json",
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        if method != "PATCH":
            content_type = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def items(self, path: str) -> list[dict[str, Any]]:
        return list((self.get(path) or {}).get("items", []))

    def log(self) -> list[Logged]:
        return list(self.emulator.log)

    def created(self, name: str) -> list[str]:
        """The resources (plurals) of every object made with this name, one entry per make."""
        return [plural for plural, _, made in list(self.emulator.created) if made == name]

    def fail(self, failure: Failure) -> None:
        self._loop.call_soon_threadsafe(self.emulator.fail, failure)
