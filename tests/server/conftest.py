"""Fixtures for server tests: real `marserve serve` processes on 127.0.0.1 with tiny real models.

The shared server starts once per session and others once per module (each worker process
imports torch, ~2 s); tests talk to them over real HTTP with aiohttp.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from support import models
from support.serving import RunningServer, start_server, stop_server

TOKEN = "s3cret-token"
# The tiny MLP's Open Inference Protocol metadata; its handler takes tensors as nested lists.
MLP_SIGNATURE = {
    "handlerInput": "tensors",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}],
    "outputs": [{"name": "output-0", "datatype": "FP64", "shape": [-1, 4]}],
}

# A handler whose behaviour each request chooses, so one model covers batching, sleeping past the
# deadline, poison requests, streaming and GPU assignment.
SCRIPTED_HANDLER = """
import os
import time

import torch
from ts.handler_utils.utils import send_intermediate_predict_response

from model import TinyMLP


class ScriptedHandler:
    def initialize(self, context):
        settings = context.model_yaml_config.get("handler", {})
        if settings.get("fail_load"):
            raise RuntimeError("the weights are corrupt")
        if settings.get("hang_load"):
            time.sleep(3600)
        properties = context.system_properties
        self.gpu_id = properties.get("gpu_id")
        self.model = TinyMLP()
        weights = os.path.join(properties["model_dir"], "model.pth")
        self.model.load_state_dict(torch.load(weights))
        self.model.eval()

    def handle(self, data, context):
        bodies = [row.get("body", row.get("x")) for row in data]
        if any(isinstance(b, dict) and b.get("poison") for b in bodies):
            raise ValueError("poisoned request")
        for body in bodies:
            if isinstance(body, dict) and body.get("sleep"):
                time.sleep(body["sleep"])
        streams = [b.get("stream", 0) if isinstance(b, dict) else 0 for b in bodies]
        ids = {idx: context.get_request_id(idx) for idx in range(len(data))}
        for step in range(max(streams)):
            send_intermediate_predict_response(
                [f"part{step} " for _ in data], ids, "intermediate", 200, context
            )
        context.metrics.add_counter("ScriptedCalls", 1)
        answers = []
        for body in bodies:
            if isinstance(body, list):
                with torch.no_grad():
                    answers.append(self.model(torch.tensor(body, dtype=torch.float32)).tolist())
            elif isinstance(body, dict) and body.get("stream"):
                answers.append("end")
            elif isinstance(body, dict) and body.get("probe"):
                import gc
                import operator
                import sys

                probe = {"cwd": os.getcwd(), "operator": operator.__file__, "path": sys.path,
                         "gc_frozen": gc.get_freeze_count(), "gc_tracked": len(gc.get_objects()),
                         "gc_enabled": gc.isenabled(), "torch_threads": torch.get_num_threads()}
                answers.append(probe)
            elif isinstance(body, dict) and body.get("big"):
                answers.append("x" * body["big"])
            elif isinstance(body, dict) and body.get("garble"):
                # Writes what no front end can use onto this worker's own channel, ahead of the
                # batch's results: a frame that does not unpickle, a value that is no message
                # and results for a batch the front end never sent.
                import struct

                from marserve.server.messages import BatchResults

                channel = context.intermediate_response_sink.__closure__[0].cell_contents
                payload = b"garbage, no pickle"
                channel._sock.sendall(struct.pack("!I", len(payload)) + payload)
                channel.send(("results", 0, [], [], False))
                channel.send(BatchResults(batch_id=-1, results=[], metrics=[], recycle=False))
                answers.append("garbled")
            else:
                answers.append({"batch": len(data), "gpu": self.gpu_id, "pid": os.getpid()})
        return answers
"""

# A TorchServe-style handler built on BaseHandler, archived with the real torch-model-archiver.
BASE_HANDLER = """
import torch
from ts.torch_handler.base_handler import BaseHandler


class MLPHandler(BaseHandler):
    def preprocess(self, data):
        rows = [row.get("data") or row.get("body") for row in data]
        return torch.tensor(rows, dtype=torch.float32)

    def postprocess(self, data):
        return data.tolist()
"""


def scripted_model_dir(
    directory: Path, *, name: str, yaml_config: Mapping[str, Any] | None = None
) -> Path:
    """An extracted model directory (as a pod's init container leaves it) with ScriptedHandler."""
    models.write_eager(models.make_mlp(), directory)
    models.write_text(directory / "scripted_handler.py", SCRIPTED_HANDLER)
    model: dict[str, Any] = {
        "modelName": name,
        "modelVersion": "1.0",
        "handler": "scripted_handler.py",
        "modelFile": "model.py",
        "serializedFile": "model.pth",
    }
    if yaml_config:
        models.write_text(directory / "model-config.yaml", json.dumps(dict(yaml_config)))
        model["configFile"] = "model-config.yaml"
    models.write_json(directory / "MAR-INF" / "MANIFEST.json", {"model": model})
    return directory


def archived_mlp(directory: Path) -> Path:
    """The tiny MLP archived by the real torch-model-archiver with a BaseHandler subclass."""
    model_file, weights = models.write_eager(models.make_mlp(), directory / "src")
    handler = models.write_text(directory / "src" / "mlp_handler.py", BASE_HANDLER)
    return models.torch_model_archiver(
        model_name="archived",
        handler=handler,
        export_path=directory / "store",
        serialized_file=weights,
        model_file=model_file,
    )


@pytest.fixture(scope="session")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def own_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own-server")


@pytest.fixture(scope="session")
def token_file(module_tmp: Path) -> Path:
    path = module_tmp / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="session")
def main_server(module_tmp: Path, token_file: Path) -> Iterator[RunningServer]:
    """Three models: `mlp` (2 workers, batching, fake GPUs 3 and 5, tensors on /v2), `slow` (1 s
    deadline, queue of 2) and `archived` (a real torch-model-archiver MAR); token auth on."""
    mlp = scripted_model_dir(
        module_tmp / "mlp",
        name="mlp",
        yaml_config={
            "minWorkers": 2,
            "batchSize": 8,
            "maxBatchDelay": 20,
            "deviceIds": [3, 5],
            "openInferenceProtocol": MLP_SIGNATURE,
        },
    )
    slow = scripted_model_dir(
        module_tmp / "slow",
        name="slow",
        yaml_config={"batchSize": 1, "responseTimeout": 1, "jobQueueSize": 2},
    )
    archive = archived_mlp(module_tmp / "archived")
    server = start_server(
        module_tmp,
        model_args=[f"mlp={mlp}", f"slow={slow}", f"archived={archive}"],
        extra_args=[
            "--token-file",
            str(token_file),
            "--max-request-size",
            "100000",
            "--max-response-size",
            "50000",
        ],
        env={"MARSERVE_WORKER_GRACE_SECONDS": "0.5"},
    )
    yield server
    stop_server(server)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def server_kit() -> Any:
    """The helpers for modules that start a server of their own (conftest is not importable)."""
    return SimpleNamespace(
        scripted_model_dir=scripted_model_dir,
        start_server=start_server,
        stop_server=stop_server,
        mlp_signature=MLP_SIGNATURE,
    )
