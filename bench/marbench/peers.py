"""The Python serving peers marserve is compared with: how each starts, where it listens, and the
same request written in its own wire format.

Every peer runs a small server file from bench/peers/ in its own venv (made by `make bench`),
loading the archive's TorchScript file. A peer that cannot take the raw body marserve takes
gets the same bytes its most natural way: JSON floats for the MLP, base64 text for images.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).parents[1] / "peers"
# Where `marserve.server.cpu_threads` is found: the peers size torch's threads by marserve's rule.
THREAD_RULE_ROOT = Path(__file__).parents[2] / "worker"


class Wire(enum.Enum):
    """A request and answer format: marserve's raw body, KServe v1, Open Inference v2, LitServe."""

    RAW = "raw"
    KSERVE_V1 = "kserve_v1"
    OPEN_INFERENCE_V2 = "v2"
    LITSERVE = "litserve"


@dataclass(frozen=True)
class Peer:
    """One peer server: its venv under the repository, its server file, wire format and path."""

    venv: str
    script: str
    wire: Wire
    path: str
    batching: str

    def url_path(self, model: str) -> str:
        return self.path.format(model=model)


PEERS = {
    "kserve_v1": Peer(
        ".venv-kserve",
        "kserve_server.py",
        Wire.KSERVE_V1,
        "/v1/models/{model}:predict",
        "none (KServe batches in its Go agent sidecar)",
    ),
    "kserve_v2": Peer(
        ".venv-kserve",
        "kserve_server.py",
        Wire.OPEN_INFERENCE_V2,
        "/v2/models/{model}/infer",
        "none (KServe batches in its Go agent sidecar)",
    ),
    "mlserver": Peer(
        ".venv-mlserver",
        "mlserver_server.py",
        Wire.OPEN_INFERENCE_V2,
        "/v2/models/{model}/infer",
        "adaptive batching: max_batch_size 8, max_batch_time 5 ms",
    ),
    "litserve": Peer(
        ".venv-litserve",
        "litserve_server.py",
        Wire.LITSERVE,
        "/predict",
        "max_batch_size 8, batch_timeout 5 ms",
    ),
    "rayserve": Peer(
        ".venv-rayserve",
        "rayserve_server.py",
        Wire.RAW,
        "/predictions/{model}",
        "@serve.batch: max_batch_size 8, batch_wait_timeout_s 5 ms",
    ),
}


def _input_value(raw: bytes, content_type: str) -> Any:
    if content_type == "application/json":
        return json.loads(raw)
    return base64.b64encode(raw).decode()


def request_body(wire: Wire, *, raw: bytes, content_type: str) -> tuple[bytes, str]:
    """The body and content type that carry marserve's body `raw` in format `wire`."""
    if wire is Wire.RAW:
        return raw, content_type
    value = _input_value(raw, content_type)
    document: dict[str, Any]
    if wire is Wire.KSERVE_V1:
        document = {"instances": [value if isinstance(value, list) else {"b64": value}]}
    elif wire is Wire.LITSERVE:
        document = {"input": value}
    elif isinstance(value, list):
        tensor = {"name": "input-0", "shape": [1, len(value)], "datatype": "FP32", "data": value}
        document = {"inputs": [tensor]}
    else:
        document = {
            "inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "data": [value]}]
        }
    return json.dumps(document).encode(), "application/json"


def parse_answer(wire: Wire, body: bytes) -> list[float]:
    """The output row of a one-row answer in format `wire`."""
    document = json.loads(body)
    if wire is Wire.KSERVE_V1:
        document = document["predictions"][0]
    elif wire is Wire.LITSERVE:
        document = document["output"]
    elif wire is Wire.OPEN_INFERENCE_V2:
        document = document["outputs"][0]["data"]
    return [float(value) for value in document]


def command(peer: Peer, *, venv: Path, model_file: Path, name: str, port: int, batch_size: int,
            max_batch_delay_ms: int) -> list[str]:  # fmt: skip
    return [
        str(venv / "bin" / "python"), str(PEERS_DIR / peer.script),
        "--model-file", str(model_file), "--name", name, "--port", str(port),
        "--max-batch-size", str(batch_size), "--max-batch-delay-ms", str(max_batch_delay_ms),
    ]  # fmt: skip
