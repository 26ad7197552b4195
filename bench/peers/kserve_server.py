"""KServe's Python model server on the bench's model, as KServe's custom-model docs write one.

A `kserve.Model` subclass answers both REST protocols on one port: v1 (`/v1/models/<name>:predict`,
`{"instances": [...]}`) and Open Inference Protocol v2 (`/v2/models/<name>/infer`). KServe's
request batching lives in its Go agent sidecar, not in this server, so each request runs alone.
Images come as base64 text: `{"b64": ...}` in v1, a BYTES tensor in v2.
"""

from __future__ import annotations

from typing import Any

import peer_model
from kserve import InferRequest, InferResponse, Model, ModelServer
from kserve.protocol.infer_type import InferOutput


class BenchModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, model: peer_model.TorchScriptModel) -> None:
        super().__init__(name)
        self.model = model
        self.ready = True

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            tensor = payload.inputs[0]
            rows = [
                peer_model.row_tensor(row) for row in peer_model.v2_rows(tensor.data, tensor.shape)
            ]
            outputs = self.model.predict(rows)
            output = InferOutput(
                name="output-0",
                shape=[len(outputs), len(outputs[0])],
                datatype="FP32",
                data=peer_model.flat(outputs),
            )
            return InferResponse(
                model_name=self.name, infer_outputs=[output], response_id=payload.id or ""
            )
        rows = [
            peer_model.row_tensor(row["b64"] if isinstance(row, dict) else row)
            for row in payload["instances"]
        ]
        return {"predictions": self.model.predict(rows)}


def main() -> None:
    args = peer_model.arguments(__doc__)
    model = BenchModel(args.name, peer_model.TorchScriptModel(args.model_file))
    ModelServer(
        http_port=args.port, grpc_port=peer_model.free_port(), enable_grpc=False, workers=1
    ).start([model])


if __name__ == "__main__":
    main()
