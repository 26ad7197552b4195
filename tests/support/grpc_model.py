"""A model for gRPC tests whose handler each request steers through its JSON `data` input,
and the helpers that build such requests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from support import models

TOKEN = "grpc-token"
MAX_REQUEST_SIZE = 20_000

# Each request steers the handler with its JSON `data` input: sleep, fail, or stream chunks.
# Inputs that are not JSON are answered with their names and sizes, as bytes reach handlers.
STEERED_HANDLER = """
import json
import time

from ts.handler_utils.utils import send_intermediate_predict_response


class SteeredHandler:
    def initialize(self, context):
        pass

    def handle(self, data, context):
        (row,) = data  # batchSize 1
        try:
            steer = json.loads(row.get("data") or b"")
        except ValueError:
            steer = None
        if not isinstance(steer, dict):
            return [{name: len(value) for name, value in sorted(row.items())}]
        time.sleep(steer.get("sleep", 0))
        if steer.get("fail"):
            raise ValueError("asked to fail")
        ids = {0: context.get_request_id(0)}
        for step in range(steer.get("stream", 0)):
            send_intermediate_predict_response([f"part{step} "], ids, "chunk", 200, context)
        sequence = context.get_request_header(0, "ts_request_sequence_id")
        return [{"echo": steer, "sequence": sequence, "inputs": sorted(row)}]
"""


def steered_model_dir(directory: Path, *, name: str, **yaml: Any) -> Path:
    models.write_text(directory / "handler.py", STEERED_HANDLER)
    models.write_json(directory / "model-config.yaml", yaml)
    manifest = {
        "modelName": name,
        "modelVersion": "2.0",
        "handler": "handler.py",
        "configFile": "model-config.yaml",
    }
    models.write_json(directory / "MAR-INF" / "MANIFEST.json", {"model": manifest})
    return directory


def steer(**what: Any) -> Mapping[str, bytes]:
    """The input map of a request that steers the handler."""
    return {"data": json.dumps(what).encode()}
