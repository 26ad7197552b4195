"""Model load failure, graceful SIGTERM drain, and command-line errors."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest


@pytest.fixture(scope="module")
def broken_server(own_tmp: Path, server_kit: Any) -> Iterator[Any]:
    """`ok` loads; `broken` raises in initialize() and `hung` never finishes it, so the server
    is up but never ready."""
    ok = server_kit.scripted_model_dir(own_tmp / "ok", name="ok")
    broken = server_kit.scripted_model_dir(
        own_tmp / "broken", name="broken", yaml_config={"handler": {"fail_load": True}}
    )
    hung = server_kit.scripted_model_dir(
        own_tmp / "hung",
        name="hung",
        yaml_config={"startupTimeout": 1, "handler": {"hang_load": True}},
    )
    server = server_kit.start_server(
        own_tmp,
        model_args=[f"ok={ok}", f"broken={broken}", f"hung={hung}"],
        wait_ready=False,
        env={"MARSERVE_LOG_FORMAT": "json"},
    )
    yield server
    server_kit.stop_server(server)


async def describe(session: aiohttp.ClientSession, server: Any, model: str) -> dict[str, Any]:
    for _ in range(600):
        async with session.get(f"{server.management}/models/{model}") as response:
            (described,) = await response.json()
        if described["status"] != "LOADING":
            result: dict[str, Any] = described
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{model} never finished loading:\n{server.log()}")


async def test_a_model_that_cannot_load_is_failed_with_its_reason(broken_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        described = await describe(session, broken_server, "broken")
        assert described["status"] == "FAILED"
        assert "the weights are corrupt" in described["failure"]
        assert described["workers"][0]["restarts"] == 0
        assert (await describe(session, broken_server, "ok"))["status"] == "READY"
        hung = await describe(session, broken_server, "hung")
        assert hung["status"] == "FAILED" and "startupTimeout" in hung["failure"]
        async with session.post(f"{broken_server.inference}/predictions/broken") as response:
            assert response.status == 503
            assert "the weights are corrupt" in (await response.json())["message"]
        async with session.get(f"{broken_server.inference}/ping") as response:
            assert response.status == 503
            assert "broken" in (await response.json())["message"]
        async with session.get(f"{broken_server.inference}/v2/models/broken/ready") as response:
            assert response.status == 503
        async with session.get(f"{broken_server.management}/models") as response:
            listed = {m["modelName"]: m["status"] for m in (await response.json())["models"]}
        assert listed == {"ok": "READY", "broken": "FAILED", "hung": "FAILED"}


async def test_logs_are_json_lines_with_request_ids(broken_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        await describe(session, broken_server, "broken")
        headers = {"X-Request-Id": "trace-me-42"}
        url = f"{broken_server.inference}/predictions/broken"
        async with session.post(url, headers=headers) as response:
            assert response.status == 503
    entries = [json.loads(line) for line in broken_server.log().splitlines() if line.strip()]
    assert any(e["level"] == "ERROR" and "broken" in e["message"] for e in entries)
    assert any(e.get("request_id") == "trace-me-42" for e in entries)


async def test_sigterm_drains_in_flight_requests_then_exits_0(broken_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        await describe(session, broken_server, "ok")
        url = f"{broken_server.inference}/predictions/ok"
        request = asyncio.create_task(session.post(url, json={"sleep": 2}))
        await asyncio.sleep(0.5)
        broken_server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with session.get(f"{broken_server.inference}/ping") as response:
            assert response.status == 503
            assert "shutting down" in (await response.json())["message"]
        response = await request
        assert response.status == 200
        response.release()
    assert await asyncio.to_thread(broken_server.process.wait, 30) == 0


def test_unknown_model_path_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    marserve = Path(sys.executable).with_name("marserve")
    result = subprocess.run(
        [str(marserve), "serve", "--models", f"m={tmp_path / 'missing'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "missing" in result.stderr and "does not exist" in result.stderr
