"""Helpers handlers share: class labels from `index_to_name.json`, YAML config, module classes.

TorchServe handlers import these from `ts.utils.util`; marserve's built-in handlers and its model
loader use the same functions, so label files and handler modules behave alike everywhere.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from marserve.worker.errors import PredictionException

__all__ = [
    "PredictionException",
    "get_yaml_config",
    "list_classes_from_module",
    "load_label_mapping",
    "map_class_to_label",
]

logger = logging.getLogger(__name__)


def load_label_mapping(mapping_file_path: str | Path) -> dict[str, str] | None:
    """Reads `{"<class id>": "label" | [..., "label"]}` (or legacy `object_type_names`).

    A missing file is not an error (outputs keep numeric class ids), matching TorchServe.
    """
    path = Path(mapping_file_path)
    if not path.is_file():
        logger.warning("%s is missing: outputs will carry class ids, not names", path)
        return None
    mapping = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(mapping, dict):
        raise ValueError(f'{path}: the label mapping must be a JSON object {{"<class id>": label}}')
    legacy = mapping.get("object_type_names")
    if isinstance(legacy, list):
        return {str(index): str(name) for index, name in enumerate(legacy)}
    labels: dict[str, str] = {}
    for key, value in mapping.items():
        label = value[-1] if isinstance(value, list) and value else value
        if not isinstance(label, str):
            raise ValueError(f"{path}: label for class {key!r} must be a string or list of strings")
        labels[str(key)] = label
    return labels


def map_class_to_label(
    probs: Sequence[Sequence[float]],
    mapping: Mapping[str, str] | None = None,
    lbl_classes: Sequence[Sequence[Any]] | None = None,
) -> list[dict[str, float]]:
    """Turns per-row probabilities into `[{label: prob, ...}, ...]`, one dict per row.

    `lbl_classes` gives the class id of each probability (top-k results); without it, position
    `i` is class `i`. Class ids without a mapping stay as their string form.
    """
    if not isinstance(probs, list) or not all(isinstance(row, list) for row in probs):
        raise TypeError("map_class_to_label expects probabilities as a list of lists")
    if mapping is not None and not isinstance(mapping, Mapping):
        raise TypeError("map_class_to_label expects the mapping as a dict")
    classes = lbl_classes if lbl_classes is not None else [range(len(row)) for row in probs]
    return [
        {
            (mapping[str(cls)] if mapping is not None else str(cls)): prob
            for cls, prob in zip(row_classes, row, strict=False)
        }
        for row_classes, row in zip(classes, probs, strict=False)
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
