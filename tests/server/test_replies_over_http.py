"""Replies over real HTTP where the route hands the body through untouched or a stream breaks:
a `kservev2` envelope receives the v2 request exactly as validated, and a stream cut short by its
worker's death ends with an error line after the chunks already sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch

from support import models

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]

ENVELOPED_HANDLER = """
import os

import torch

from model import TinyMLP


class EnvelopedMLP:
    def initialize(self, context):
        self.model = TinyMLP()
        weights = os.path.join(context.system_properties["model_dir"], "model.pth")
        self.model.load_state_dict(torch.load(weights))
        self.model.eval()

    def handle(self, data, context):
        with torch.no_grad():
            return [self.model(torch.tensor(row["data"], dtype=torch.float32)) for row in data]
"""

STALLING_STREAM_HANDLER = """
import time

from ts.handler_utils.utils import send_intermediate_predict_response


class StallingStream:
    def initialize(self, context):
        pass

    def handle(self, data, context):
        ids = {idx: context.get_request_id(idx) for idx in range(len(data))}
        send_intermediate_predict_response(["first " for _ in data], ids, "part", 200, context)
        time.sleep(30)  # past responseTimeout and the grace: the server kills this worker
        return ["never sent" for _ in data]
"""


def model_dir(
    directory: Path, *, name: str, handler: str, envelope: str | None = None, **yaml: Any
) -> Path:
    models.write_eager(models.make_mlp(), directory)
    models.write_text(directory / "handler.py", handler)
    manifest: dict[str, Any] = {
        "modelName": name,
        "modelVersion": "1.0",
        "handler": "handler.py",
        "configFile": "model-config.yaml",
    }
    if envelope:
        manifest["envelope"] = envelope
    models.write_json(directory / "model-config.yaml", yaml)
    models.write_json(directory / "MAR-INF" / "MANIFEST.json", {"model": manifest})
    return directory


@pytest.fixture(scope="module")
def server(own_tmp: Path, server_kit: Any) -> Iterator[Any]:
    enveloped = model_dir(
        own_tmp / "enveloped", name="enveloped", handler=ENVELOPED_HANDLER, envelope="kservev2"
    )
    stalling = model_dir(
        own_tmp / "stalling", name="stalling", handler=STALLING_STREAM_HANDLER, responseTimeout=1
    )
    running = server_kit.start_server(
        own_tmp,
        model_args=[f"enveloped={enveloped}", f"stalling={stalling}"],
        env={"MARSERVE_WORKER_GRACE_SECONDS": "0.5"},
    )
    yield running
    server_kit.stop_server(running)


async def test_a_v2_envelope_gets_the_request_as_sent(server: Any) -> None:
    request = {
        "id": "r\u00e9quest-1",
        "inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": ROW}],
    }
    body = json.dumps(request, ensure_ascii=False).encode()  # UTF-8 as sent, no \u escapes
    url = f"{server.inference}/v2/models/enveloped/infer"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers={"Content-Type": "application/json"}) as response,
    ):
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["id"] == request["id"]
    (output,) = answer["outputs"]
    with torch.no_grad():
        expected = models.make_mlp()(torch.tensor([ROW])).flatten().tolist()
    assert output["shape"] == [1, 4]
    assert output["data"] == pytest.approx(expected, rel=1e-6)


async def test_a_stream_cut_short_ends_with_an_error_line(server: Any) -> None:
    url = f"{server.inference}/predictions/stalling"
    async with aiohttp.ClientSession() as http, http.post(url, data=b"go") as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        text = await response.text()
    first, error, end = text.split("\n")
    assert (first, end) == ("first ", "")
    assert json.loads(error) == {
        "error": "The worker for model 'stalling' died: killed after passing its response "
        "timeout; retry"
    }
