"""ONNX Runtime sessions placed on the worker's device and sized to its CPU limit.

The session is an `onnxruntime.InferenceSession` (handlers written for TorchServe call `.run`
and `.get_inputs` on it) that can also be called like a module with tensors, so the default
`BaseHandler.inference` works for ONNX models without a custom handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from marserve.loading.cpu import available_cpus

Provider = str | tuple[str, dict[str, Any]]


def onnx_providers(device: torch.device) -> list[Provider]:
    """CUDA on the worker's GPU (with CPU for unsupported ops), CPU everywhere else."""
    if device.type == "cuda":
        cuda_options = {"device_id": device.index or 0}
        return [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSession(ort.InferenceSession):  # type: ignore[misc]
    """An inference session that remembers the providers asked for and accepts tensors."""

    def __init__(self, path: Path, *, providers: Sequence[Provider], intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self.requested_providers = list(providers)
        self.intra_op_threads = intra_op_threads
        super().__init__(str(path), sess_options=options, providers=self.requested_providers)

    def __call__(self, *inputs: Any, **named: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Feeds inputs in the graph's input order; outputs come back on the inputs' device."""
        names = [node.name for node in self.get_inputs()]
        if len(inputs) > len(names):
            raise TypeError(f"the ONNX model takes {len(names)} inputs, got {len(inputs)}")
        feeds = {name: _to_numpy(value) for name, value in zip(names, inputs, strict=False)}
        feeds.update({name: _to_numpy(value) for name, value in named.items()})
        device = next((v.device for v in (*inputs, *named.values()) if torch.is_tensor(v)), None)
        outputs = [torch.from_numpy(np.asarray(out)) for out in self.run(None, feeds)]
        if device is not None:
            outputs = [out.to(device) for out in outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def open_onnx_session(path: Path, device: torch.device) -> OnnxSession:
    return OnnxSession(path, providers=onnx_providers(device), intra_op_threads=available_cpus())


def _to_numpy(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)
