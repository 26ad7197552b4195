"""One good model among broken ones: `marserve serve` fails each broken model with its reason and
keeps serving the good one.

What `marserve extract` does with hostile archives (exit 2, one line, nothing partial) is proved in
tests/archive/test_hostile.py; here the same kinds of archive reach the server.
"""

from __future__ import annotations

import json
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marserve.manifest import MANIFEST_PATH
from reliability.serving import chaos_archive, describe, wait_until
from support import models
from support.serving import RunningServer, start_server, stop_server

MANIFEST = {"runtime": "python", "model": {"modelName": "m", "handler": "h.py"}}


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _path_escape(tmp: Path) -> Path:
    return _zip(
        tmp / "escape.mar",
        {MANIFEST_PATH: json.dumps(MANIFEST).encode(), "h.py": b"", "../../escaped.py": b"x"},
    )


def _symlink_out(tmp: Path) -> Path:
    """A zip whose handler is a symlink to a file outside the destination."""
    path = tmp / "symlink.mar"
    link = zipfile.ZipInfo("h.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MANIFEST_PATH, json.dumps(MANIFEST))
        archive.writestr(link, "/etc/passwd")
    return path


def _entry_bomb(tmp: Path) -> Path:
    """A tiny zip64 archive whose end record declares a billion entries."""
    path = tmp / "bomb.mar"
    limit = zipfile.ZIP_FILECOUNT_LIMIT
    try:
        zipfile.ZIP_FILECOUNT_LIMIT = 1  # the writer emits zip64 records above this count
        _zip(path, {MANIFEST_PATH: json.dumps(MANIFEST).encode(), "h.py": b""})
    finally:
        zipfile.ZIP_FILECOUNT_LIMIT = limit
    data = bytearray(path.read_bytes())
    struct.pack_into("<QQ", data, data.rindex(b"PK\x06\x06") + 24, 10**9, 10**9)
    path.write_bytes(bytes(data))
    return path


def _truncated(good: Path, tmp: Path) -> Path:
    path = tmp / "truncated.mar"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _archived(tmp: Path, *, name: str, handler_source: str, **files: Path) -> Path:
    """A real torch-model-archiver MAR around `handler_source`."""
    handler = models.write_text(tmp / name / f"{name}_handler.py", handler_source)
    return models.torch_model_archiver(
        model_name=name, handler=handler, export_path=tmp / "store", **files
    )


def _missing_handler(tmp: Path) -> Path:
    """An extracted model directory whose manifest names a handler file it does not hold."""
    directory = tmp / "nohandler"
    models.write_json(
        directory / MANIFEST_PATH,
        {"runtime": "python", "model": {"modelName": "nohandler", "handler": "gone_handler.py"}},
    )
    return directory


def _wrong_format(tmp: Path) -> Path:
    """A built-in handler whose serialized file is text, not TorchScript."""
    weights = models.write_text(tmp / "wrongformat" / "model.pt", "this is not a TorchScript file")
    return models.torch_model_archiver(
        model_name="wrongformat",
        handler="image_classifier",
        export_path=tmp / "store",
        serialized_file=weights,
    )


# model name -> a phrase its failure reason must contain
EXPECTED_REASONS = {
    "escape": "escaped.py",
    "symlink": "symlink to an absolute path",
    "bomb": "entries",
    "nomanifest": "MANIFEST.json",
    "truncated": "truncated.mar",
    "nohandler": "gone_handler",
    "importerror": "broken at import",
    "initerror": "cannot initialise",
    "wrongformat": "model.pt",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("bad-models")
    good = chaos_archive(tmp / "good", name="good", yaml_config={"minWorkers": 1})
    paths = {
        "escape": _path_escape(tmp),
        "symlink": _symlink_out(tmp),
        "bomb": _entry_bomb(tmp),
        "nomanifest": _zip(tmp / "nomanifest.mar", {"h.py": b""}),
        "truncated": _truncated(good, tmp),
        "nohandler": _missing_handler(tmp),
        "importerror": _archived(
            tmp, name="importerror", handler_source="raise ImportError('broken at import')\n"
        ),
        "initerror": _archived(
            tmp,
            name="initerror",
            handler_source=(
                "class Handler:\n"
                "    def initialize(self, context):\n"
                "        raise RuntimeError('cannot initialise: no GPU here')\n"
                "    def handle(self, data, context):\n"
                "        return data\n"
            ),
        ),
        "wrongformat": _wrong_format(tmp),
    }
    model_args = [f"good={good}", *(f"{name}={path}" for name, path in paths.items())]
    running = start_server(tmp, model_args=model_args, wait_ready=False)
    yield running
    stop_server(running)


async def _settled(session: aiohttp.ClientSession, server: RunningServer) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        async with session.get(f"{server.management}/models") as response:
            listed = (await response.json())["models"]
        statuses = {entry["modelName"]: entry["status"] for entry in listed}
        return None if "LOADING" in statuses.values() else statuses

    settled: dict[str, Any] = await wait_until(check, timeout=90, what="every model to settle")
    return settled


async def test_each_bad_model_is_failed_with_its_reason_and_the_good_one_serves(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as session:
        statuses = await _settled(session, server)
        assert statuses == {"good": "READY", **dict.fromkeys(EXPECTED_REASONS, "FAILED")}, (
            server.log()
        )
        for name, phrase in EXPECTED_REASONS.items():
            described = await describe(session, server, name)
            assert phrase in (described["failure"] or ""), (name, described["failure"])
            async with session.post(f"{server.inference}/predictions/{name}", json={}) as response:
                assert response.status == 503
                body = await response.json()
                assert body["type"] == "ModelLoadFailed"
                assert phrase in body["message"]
            async with session.get(f"{server.inference}/v2/models/{name}/ready") as response:
                assert response.status == 503
        for _ in range(3):
            async with session.post(f"{server.inference}/predictions/good", json={}) as response:
                assert response.status == 200, await response.text()
        async with session.get(f"{server.inference}/v2/models/good/ready") as response:
            assert response.status == 200


async def test_readiness_names_the_failed_models(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        await _settled(session, server)
        async with session.get(f"{server.inference}/ping") as response:
            assert response.status == 503
            message = (await response.json())["message"]
        assert all(name in message for name in EXPECTED_REASONS)
        assert "good" not in message.replace("good_", "")
        async with session.get(f"{server.inference}/v2/health/ready") as response:
            assert response.status == 503
        async with session.get(f"{server.inference}/v2/health/live") as response:
            assert response.status == 200


def test_the_escaping_entry_was_not_written(server: RunningServer) -> None:
    """The server unpacks under a scratch folder in the temp dir; `../../` would reach it."""
    assert server.process.poll() is None
    assert not (Path(tempfile.gettempdir()) / "escaped.py").exists()
