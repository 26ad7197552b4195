"""The helpers TorchServe handlers import from `ts.utils.util`, in one marserve module.

Label mapping lives with the handlers (`handlers.labels`) and is re-exported here; the model
loader uses `list_classes_from_module` and `get_yaml_config`, so handlers and loader agree.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import yaml

from marserve.errors import PredictionException
from marserve.handlers.labels import load_label_mapping, map_class_to_label

__all__ = [
    "CLEANUP_REGEX",
    "PT2Backend",
    "PredictionException",
    "check_valid_pt2_backend",
    "deprecated",
    "get_yaml_config",
    "list_classes_from_module",
    "load_label_mapping",
    "map_class_to_label",
]

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

CLEANUP_REGEX = re.compile("<.*?>|&([a-z0-9]+|#[0-9]{1,6}|#x[0-9a-f]{1,6});")
"""HTML tags and entities, which TorchServe's text handlers strip from their input."""


class PT2Backend(str, enum.Enum):  # noqa: UP042 - TorchServe's bases; str() differs on StrEnum
    """The `torch.compile` backends TorchServe accepts in a model YAML's `pt2` block."""

    EAGER = "eager"
    AOT_EAGER = "aot_eager"
    INDUCTOR = "inductor"
    NVFUSER = "nvfuser"
    AOT_NVFUSER = "aot_nvfuser"
    AOT_CUDAGRAPHS = "aot_cudagraphs"
    OFI = "ofi"
    FX2TRT = "fx2trt"
    ONNXRT = "onnxrt"
    IPEX = "ipex"
    TORCHXLA_TRACE_ONCE = "torchxla_trace_once"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    HPU_BACKEND = "hpu_backend"


def check_valid_pt2_backend(backend: str) -> bool:
    """Whether `backend` is one TorchServe knows; an unknown one is logged, not raised."""
    if backend in {member.value for member in PT2Backend}:
        return True
    logger.warning("%s is not a supported backend", backend)
    return False


def deprecated(
    version: str, replacement: str = "", klass: type[Warning] = PendingDeprecationWarning
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Marks a function deprecated: each call warns with `klass`, naming the replacement."""

    def deprecator(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            warnings.warn(
                f"{function.__name__} is deprecated in {version} and moved to {replacement}",
                klass,
                stacklevel=2,
            )
            return function(*args, **kwargs)

        return wrapper

    return deprecator


def list_classes_from_module(module: ModuleType, parent_class: type | None = None) -> list[type]:
    """Classes defined in `module` itself (imported ones do not count), optionally of a base."""
    classes = [
        member
        for _, member in inspect.getmembers(module, inspect.isclass)
        if member.__module__ == module.__name__
    ]
    if parent_class is None:
        return classes
    return [cls for cls in classes if issubclass(cls, parent_class)]


def get_yaml_config(yaml_file_path: str | Path) -> dict[str, Any]:
    """Parses a model-config YAML file; an empty file gives an empty dict."""
    with open(yaml_file_path, encoding="utf-8") as stream:
        config = yaml.safe_load(stream)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"{yaml_file_path}: the model config must be a YAML mapping")
    return config
