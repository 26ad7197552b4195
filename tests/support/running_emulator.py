"""The Kubernetes emulator served on 127.0.0.1 from its own thread, so tests stay synchronous
and reach it through an ordinary kubeconfig file, plus the small client tests act with."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kmock
import yaml

from support.kube_emulator import Failure, KubeEmulator, Logged


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
