"""LitServe on the bench's model, as LitServe's docs write a batched API.

A `LitAPI` with batching on (`max_batch_size`, `batch_timeout`), one worker on the CPU, answering
`POST /predict`. LitServe reads a JSON body (or a form): the MLP's floats come as
`{"input": [...]}`, images as base64 text in `{"input": "..."}`.
"""

from __future__ import annotations

from typing import Any

import litserve
import peer_model
import torch

RESPONSE_TIMEOUT_S = 120  # the archives' responseTimeout


class BenchAPI(litserve.LitAPI):  # type: ignore[misc]
    def __init__(self, model_file: str, **batching: Any) -> None:
        super().__init__(**batching)
        self.model_file = model_file

    def setup(self, device: str) -> None:
        self.model = peer_model.TorchScriptModel(self.model_file)

    # Left unannotated on purpose: LitServe then passes the parsed JSON body.
    def decode_request(self, request) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return peer_model.row_tensor(request["input"])

    def batch(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return inputs

    def predict(self, rows: list[torch.Tensor]) -> list[list[float]]:
        return self.model.predict(rows)

    def unbatch(self, outputs: list[list[float]]) -> list[list[float]]:
        return outputs

    def encode_response(self, output: list[float]) -> dict[str, Any]:
        return {"output": output}


def main() -> None:
    args = peer_model.arguments(__doc__)
    api = BenchAPI(
        str(args.model_file),
        max_batch_size=args.max_batch_size,
        batch_timeout=args.max_batch_delay_ms / 1000,
    )
    server = litserve.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=1, timeout=RESPONSE_TIMEOUT_S
    )
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
