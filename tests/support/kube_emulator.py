"""A Kubernetes API emulator for operator tests: kmock answering as the API server does (see
`kmock_conformance.py`), plus the writes' metadata, CRD registration, the scale subresource and
server-side apply (see `server_side_apply.py`), and what tests need to watch and upset it: a log
of requests and injected failures. `running_emulator.py` serves it."""

from __future__ import annotations

import copy
import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import dicts, enums, rendering

from support import server_side_apply
from support.kmock_conformance import ConformingEmulator


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generation(current: Mapping[str, Any], *, spec: Any) -> int:
    """The generation after a write: it counts the changes of the spec, as the API server's."""
    generation = int(current["metadata"].get("generation", 1))
    return generation + 1 if spec != current.get("spec") else generation


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


class KubeEmulator(ConformingEmulator):
    """kmock's emulator with the API server behaviour our tests depend on."""

    # kmock matches each request against its whole history; keep only a short tail of it.
    _history_kept = 4

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.log: list[Logged] = []
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
        ).startswith(server_side_apply.APPLY_CONTENT_TYPE):
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
        self._stamp_new(request, meta)
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
        stamp = {
            "resourceVersion": str(next(self._versions)),
            "generation": _generation(current, spec=changed.get("spec")),
        }
        if isinstance(data, list):
            data.extend(
                {"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items()
            )
        else:
            meta = data.get("metadata") or {}
            data["metadata"] = {**meta, **stamp}

    def _stamp_new(self, request: rendering.Request, meta: dict[str, Any]) -> None:
        """What the API server sets on an object it makes, by a create or an apply."""
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(next(self._versions))
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        self.created.append((request.resource.plural, meta.get("namespace"), meta.get("name")))

    async def _apply(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """Server-side apply (see `server_side_apply.py`): creates a missing object or updates a
        stored one, and changes nothing (no new resourceVersion, no watch event) when the result
        is what is stored."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise kmock.KubernetesError(422, "Invalid", "fieldManager is required for apply")
        if request.resource is None or request.name is None or not isinstance(request.data, dict):
            raise kmock.KubernetesError(400, "BadRequest", "apply a whole object by name")
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            current = self.stored(request)
            result = server_side_apply.apply(current, request.data, manager=manager)
            if current is None:
                self._stamp_new(request, result["metadata"])
                event, status = "ADDED", 201
            elif result == current:
                return aiohttp.web.json_response(current)
            else:
                result["metadata"].update(
                    resourceVersion=str(next(self._versions)),
                    generation=_generation(current, spec=result.get("spec")),
                )
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
            spec = {**current.get("spec", {}), "replicas": replicas}
            stamp = {
                "spec": {"replicas": replicas},
                "metadata": {
                    "resourceVersion": str(next(self._versions)),
                    "generation": _generation(current, spec=spec),
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
