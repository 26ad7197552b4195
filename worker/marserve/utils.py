"""The helpers TorchServe handlers import from `ts.utils.util`, in one marserve module.

Label mapping lives with the handlers (`handlers.labels`) and is re-exported here; the model
loader uses `list_classes_from_module` and `get_yaml_config`, so handlers and loader agree.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from marserve.errors import PredictionException
from marserve.handlers.labels import load_label_mapping, map_class_to_label

__all__ = [
    "PredictionException",
    "get_yaml_config",
    "list_classes_from_module",
    "load_label_mapping",
    "map_class_to_label",
]


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
