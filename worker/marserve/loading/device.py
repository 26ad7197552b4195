"""Which device a worker's model runs on, in TorchServe's priority order.

A GPU is used only when the server assigned the worker a `gpu_id`; XLA wins over CPU whenever
`torch_xla` imports. Keeping the rule in one function lets tests patch availability and check
the choice without the hardware.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

import torch

IPEX_GPU_ENV = "TS_IPEX_GPU_ENABLE"


def select_device(gpu_id: int | None, *, environ: Mapping[str, str] = os.environ) -> torch.device:
    """cuda:{gpu_id} -> xpu:{gpu_id} (when enabled) -> mps -> XLA -> cpu."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{gpu_id}")
    if gpu_id is not None and environ.get(IPEX_GPU_ENV, "false") == "true" and _xpu_available():
        return torch.device(f"xpu:{gpu_id}")
    if gpu_id is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    xla = _xla_device()
    if xla is not None:
        return xla
    return torch.device("cpu")


def enable_tensor_cores(device: torch.device) -> None:
    """On Ampere and newer GPUs, lets float32 matmuls use TF32 tensor cores, as TorchServe does."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        torch.set_float32_matmul_precision("high")


def map_location(device: torch.device) -> str | None:
    """The device type that `torch.load` and the AOTInductor loaders take ("cuda", "cpu" ...).

    XLA tensors are loaded on the host first (None), as TorchServe does.
    """
    return None if device.type == "xla" else device.type


def _xpu_available() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def _xla_device() -> torch.device | None:
    try:
        xla_model = importlib.import_module("torch_xla.core.xla_model")
    except ImportError:
        return None
    device: torch.device = xla_model.xla_device()
    return device
