"""The Open Inference Protocol paths of the bench: the model's JSON body as one FP32 tensor `data`,
sent as REST's binary tensor data or as gRPC's `raw_input_contents`, so both carry the same bytes
the HTTP path's JSON describes. Only models whose body is JSON (the MLPs) take these paths.

The archive's model YAML opts into tensors (`openInferenceProtocol.handlerInput: tensors`), so
the bench handler gets its `data` input as it does over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from marbench.artifacts import BenchModel

# The servers that speak the protocol, and the marserve each runs.
SERVERS = ("marserve-v2-binary", "marserve-oip-grpc")
HEADER_LENGTH = "Inference-Header-Content-Length"


def takes(model: BenchModel) -> bool:
    return model.content_type == "application/json"


def input_array(model: BenchModel) -> np.ndarray:
    return np.asarray(json.loads(model.body_file.read_text()), dtype="<f4")


def v2_binary_body(model: BenchModel) -> tuple[Path, int]:
    """A file holding the v2 infer body (JSON header, then the raw tensor) and the header's
    length; the answer comes back in binary too."""
    raw = input_array(model).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "data",
                    "datatype": "FP32",
                    "shape": list(input_array(model).shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    path = model.body_file.with_name("v2-binary-body")
    path.write_bytes(header + raw)
    return path, len(header)
