"""Which optional backends this process can use: TorchServe's `base_handler` feature flags.

Handlers written for TorchServe branch on `ONNX_AVAILABLE`, `XLA_AVAILABLE`, `IPEX_AVAILABLE` ...
imported from `ts.torch_handler.base_handler`. TorchServe imports every backend when the handler
module loads; here each flag imports its backend the first time it is read, so a worker that
never asks does not pay for onnxruntime or torch_xla at start-up.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch.torch_version import TorchVersion

logger = logging.getLogger(__name__)

IPEX_ENV = "TS_IPEX_ENABLE"


def importable(module_name: str) -> bool:
    """Whether `module_name` imports here (a broken install counts as absent)."""
    try:
        importlib.import_module(module_name)
    except ImportError:
        return False
    return True


def _ipex_enabled() -> bool:
    """IPEX counts only when switched on with TS_IPEX_ENABLE=true, as in TorchServe."""
    if os.environ.get(IPEX_ENV, "false") != "true":
        return False
    if importable("intel_extension_for_pytorch"):
        return True
    logger.warning("%s=true but intel-extension-for-pytorch is not installed", IPEX_ENV)
    return False


PROBES: Mapping[str, Callable[[], bool]] = MappingProxyType(
    {
        "PROFILER_AVAILABLE": lambda: hasattr(torch, "profiler"),
        "PT2_AVAILABLE": lambda: hasattr(torch, "compile"),
        "PT230_AVAILABLE": lambda: TorchVersion(torch.__version__) > "2.2.2",
        "XLA_AVAILABLE": lambda: importable("torch_xla.core.xla_model"),
        "IPEX_AVAILABLE": _ipex_enabled,
        "ONNX_AVAILABLE": lambda: importable("onnxruntime"),
    }
)
"""Flag name -> the check that gives its value."""


@functools.cache
def available(flag: str) -> bool:
    """The value of TorchServe flag `flag`, computed once per process."""
    return PROBES[flag]()


def setup_ort_session(model_pt_path: str, map_location: str | None) -> Any:
    """TorchServe's helper: an ONNX Runtime session on CUDA when `map_location` is "cuda"."""
    from marserve.loading.onnx_session import open_onnx_session

    device = torch.device("cuda" if map_location == "cuda" else "cpu")
    return open_onnx_session(Path(model_pt_path), device)
