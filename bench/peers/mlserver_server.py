"""Seldon MLServer on the bench's model: a custom `MLModel` runtime and its two settings files.

MLServer's docs configure a server with `settings.json` and each model with `model-settings.json`
in one folder, then run `mlserver start <folder>`; this file writes both (adaptive batching on:
`max_batch_size`, `max_batch_time`; one inference worker process, MLServer's default) and
becomes that command. Requests are Open Inference Protocol v2; images come as a BYTES tensor of
base64 text. The runtime class is `mlserver_server.BenchRuntime`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import peer_model
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri


class BenchRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        self.model = peer_model.TorchScriptModel(Path(await get_model_uri(self._settings)))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tensor = payload.inputs[0]
        data = tensor.data.root if hasattr(tensor.data, "root") else tensor.data
        rows = [peer_model.row_tensor(_text(row)) for row in peer_model.v2_rows(data, tensor.shape)]
        outputs = self.model.predict(rows)
        output = ResponseOutput(
            name="output-0",
            shape=[len(outputs), len(outputs[0])],
            datatype="FP32",
            data=peer_model.flat(outputs),
        )
        return InferenceResponse(model_name=self.name, outputs=[output], id=payload.id)


def _text(row: object) -> object:
    """MLServer may hand BYTES data over as bytes of the base64 text; the text is what was sent."""
    return row.decode() if isinstance(row, bytes) else row


def main() -> None:
    args = peer_model.arguments(__doc__)
    folder = Path.cwd() / "mlserver-models"
    folder.mkdir(exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": args.port,
        "grpc_port": peer_model.free_port(),
        "metrics_port": peer_model.free_port(),
        "parallel_workers": 1,
    }
    model_settings = {
        "name": args.name,
        "implementation": "mlserver_server.BenchRuntime",
        "max_batch_size": args.max_batch_size,
        "max_batch_time": args.max_batch_delay_ms / 1000,
        "parameters": {"uri": str(args.model_file)},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = Path(sys.executable).with_name("mlserver")
    os.execv(mlserver, [str(mlserver), "start", str(folder)])


if __name__ == "__main__":
    main()
