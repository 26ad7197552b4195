"""A model for Open Inference Protocol tests whose handler echoes each input back as an output,
shared by the REST and gRPC tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import models

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]

# Answers each input as an output named echo_<input>, from the request document TorchServe hands
# a handler; `sleep` and `stream` request parameters make it slow or streamed.
ECHO_HANDLER = """
import json
import time

from ts.handler_utils.utils import send_intermediate_predict_response


class Echo:
    def initialize(self, context):
        pass

    def handle(self, data, context):
        documents = [row["body"] for row in data]
        documents = [json.loads(d) if isinstance(d, (bytes, bytearray)) else d for d in documents]
        asked = [document.get("parameters", {}) for document in documents]
        for parameters in asked:
            time.sleep(parameters.get("sleep", 0))
        ids = {idx: context.get_request_id(idx) for idx in range(len(data))}
        for _ in range(max(parameters.get("stream", 0) for parameters in asked)):
            send_intermediate_predict_response(["part" for _ in data], ids, "part", 200, context)
        return [
            {
                "model_name": "echo",
                "id": document.get("id"),
                "parameters": {"seen": json.dumps(document.get("parameters", {}), sort_keys=True)},
                "outputs": [
                    {"name": "echo_" + tensor["name"], "datatype": tensor["datatype"],
                     "shape": tensor["shape"], "data": tensor["data"]}
                    for tensor in document["inputs"]
                ],
            }
            for document in documents
        ]
"""
ECHO_SIGNATURE = {
    "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1]}],
    "outputs": [{"name": "echo_a", "datatype": "FP32", "shape": [-1]}],
}


def echo_dir(directory: Path, **yaml_config: Any) -> Path:
    models.write_text(directory / "echo_handler.py", ECHO_HANDLER)
    models.write_json(directory / "model-config.yaml", yaml_config)
    manifest = {"modelName": "echo", "modelVersion": "2.0", "handler": "echo_handler.py",
                "configFile": "model-config.yaml"}  # fmt: skip
    models.write_json(directory / "MAR-INF" / "MANIFEST.json", {"model": manifest})
    return directory
