"""Security posture: the bearer token guards every route but the probes, is compared in constant
time and never logged; no route loads a model from a URL; worker pods are locked down whatever
the spec asks for.

Routes are enumerated from the server's own routers, so a route added later without auth, or a
management route that writes, fails here.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from marserve.server import middleware
from marserve.server.app import Server
from marserve.server.config import ServerConfig
from marserve.server.metrics import ServerMetrics
from marserve.server.model_sources import resolve_models
from marserve_operator import resources
from marserve_operator.settings import OperatorSettings
from reliability.serving import chaos_archive
from support.operator_fixtures import model as model_spec
from support.serving import RunningServer, start_server, stop_server

TOKEN = "k3y-" + "9" * 28
MODEL = "guarded"
# Open without a token: the probes Kubernetes needs, and the static API description (no model
# names, nothing per deployment). Anything else answering without a token fails the test.
OPEN = {"/ping", "/v2/health/live", "/v2/health/ready", "/openapi.json"}
# Where a route's path holds a placeholder, a value that reaches the handler.
PLACEHOLDERS = {"model": MODEL, "version": "1.0"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chaos_archive(tmp_path_factory.mktemp("guarded"), name=MODEL, yaml_config={})


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def server(
    archive: Path, token_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("secure"),
        model_args=[f"{MODEL}={archive}"],
        extra_args=["--token-file", str(token_file)],
        env={"MARSERVE_LOG_FORMAT": "json"},
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def apps(archive: Path, token_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The server's three aiohttp applications, built as `marserve serve` builds them (no
    listener, no worker): the routers to enumerate."""
    config = ServerConfig(models=(f"{MODEL}={archive}",), token_file=token_file)
    sources = resolve_models(config, scratch=tmp_path_factory.mktemp("scratch"))
    return Server(config, sources)._apps()


def _routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path with placeholders filled) for every route of an application."""
    found = []
    for route in app.router.routes():
        template = route.resource.canonical if route.resource is not None else ""
        path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: PLACEHOLDERS[m.group(1)], template)
        found.append((route.method, path))
    return sorted(found)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _status(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> int:
    async with session.request(method, url, headers=headers, json={}) as response:
        await response.read()
        return response.status


async def test_every_route_but_the_probes_and_the_api_description_needs_the_token(
    server: RunningServer, apps: Any, session: aiohttp.ClientSession
) -> None:
    bases = {"inference": server.inference, "management": server.management}
    wrong = "Bearer " + TOKEN[:-1] + "8"  # same length, last byte differs
    checked = 0
    for port, base in bases.items():
        for method, path in _routes(apps[port][0]):
            anonymous = await _status(session, method, base + path, {})
            mistaken = await _status(session, method, base + path, {"Authorization": wrong})
            bare = await _status(session, method, base + path, {"Authorization": TOKEN})
            allowed = await _status(
                session, method, base + path, {"Authorization": f"Bearer {TOKEN}"}
            )
            if path in OPEN:
                assert anonymous != 401, (method, path)
            else:
                assert (anonymous, mistaken, bare) == (401, 401, 401), (port, method, path)
            assert allowed != 401, (port, method, path)
            checked += 1
    assert checked >= 30


def test_only_the_metrics_endpoint_is_served_without_auth(apps: Any) -> None:
    """The metrics port is open for Prometheus (see SECURITY.md): it must serve nothing else."""
    assert _routes(apps["metrics"][0]) == [("GET", "/metrics"), ("HEAD", "/metrics")]


def test_no_route_can_load_or_change_a_model(apps: Any) -> None:
    """TorchServe's `POST /models?url=` loaded code from anywhere: the management API here only
    reads, and the inference port writes nothing but inference requests."""
    management = _routes(apps["management"][0])
    assert {method for method, _ in management} <= {"GET", "HEAD"}, management
    writes = [(m, p) for m, p in _routes(apps["inference"][0]) if m not in ("GET", "HEAD")]
    inference_verbs = re.compile(r"/(predictions|explanations)/|/infer$|:(predict|explain)$")
    assert writes and all(inference_verbs.search(path) for _, path in writes), writes


async def test_torchserve_style_registration_is_refused_and_nothing_is_fetched(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    fetched: list[str] = []

    async def serve_archive(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(body=b"PK")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", serve_archive)
    async with TestServer(app, host="127.0.0.1") as archive_server:
        url = str(archive_server.make_url("/evil.mar"))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for method, path in [
            ("POST", f"/models?url={url}&initial_workers=1"),
            ("POST", f"/models/{MODEL}?url={url}"),
            ("PUT", f"/models/{MODEL}?min_worker=4"),
            ("DELETE", f"/models/{MODEL}"),
            ("POST", f"/workflows?url={url}"),
        ]:
            status = await _status(session, method, server.management + path, auth)
            assert status in (404, 405), (method, path, status)
    assert fetched == []
    async with session.get(f"{server.management}/models", headers=auth) as response:
        listed = await response.json()
    assert [entry["modelName"] for entry in listed["models"]] == [MODEL]


async def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return original(given, expected)

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(
        middlewares=[middleware.make_middleware(metrics=ServerMetrics(), token=TOKEN.encode())]
    )
    app.router.add_get("/models", hello)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/models", headers={"Authorization": "Bearer nope"})).status == 401
        good = await client.get("/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status == 200
    expected = f"Bearer {TOKEN}".encode()
    assert compared == [(b"Bearer nope", expected), (expected, expected)]


async def test_the_token_never_reaches_the_logs(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    for headers in (
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
    ):
        for path in ("/predictions/guarded", "/predictions/nope", "/v2/models/guarded/infer"):
            await _status(session, "POST", server.inference + path, headers)
    assert server.process.poll() is None
    log = server.log()
    assert log.strip(), "the server logged nothing, so this check proves nothing"
    assert TOKEN not in log
    assert TOKEN[4:] not in log


SPECS = {
    "cpu": {},
    "nvidia": {"accelerator": {"type": "nvidia", "count": 2}},
    "intel-xpu": {"accelerator": {"type": "intel-xpu", "count": 1}},
    "amd": {"accelerator": {"type": "amd", "count": 1}},
    "pvc": {"archive": {"uri": "pvc://models/resnet.mar"}},
    "s3": {"archive": {"uri": "s3://bucket/resnet.mar", "secretRef": {"name": "aws"}}},
    "overrides": {
        "serviceAccountName": "models",
        "env": [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}],
        "nodeSelector": {"pool": "gpu"},
        "auth": {"tokenSecretRef": {"name": "t"}},
    },
}


@pytest.mark.parametrize("changes", SPECS.values(), ids=list(SPECS))
def test_worker_pods_are_locked_down_whatever_the_spec(changes: dict[str, Any]) -> None:
    """tests/operator/test_resources.py checks the full example; here every accelerator, archive
    scheme and pod override, and every container's effective settings."""
    deployment = resources.deployment(model_spec(**changes), OperatorSettings())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    assert pod["automountServiceAccountToken"] is False
    assert not [v for v in pod.get("volumes", []) if "hostPath" in v]
    containers = pod["initContainers"] + pod["containers"]
    assert len(containers) >= 2
    for container in containers:
        context = container["securityContext"]
        assert context.get("privileged") is not True
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("runAsNonRoot", True) is True
        assert context.get("runAsUser", 1) != 0
        assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {
            "type": "RuntimeDefault"
        }
