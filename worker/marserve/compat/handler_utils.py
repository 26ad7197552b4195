"""`ts.handler_utils.utils`: `import_class` and the streaming call handlers import from there."""

from __future__ import annotations

import importlib
from typing import Any

from marserve.streaming import send_intermediate_predict_response

__all__ = ["import_class", "send_intermediate_predict_response"]


def import_class(class_name: str, module_prefix: str | None = None) -> Any:
    """The class a dotted name (`pkg.module.Class`) names, under `module_prefix` when given.

    Handlers use it to pick a model class from their YAML config; every failure is an
    ImportError, as in TorchServe.
    """
    if not class_name:
        raise ImportError("class name is not defined")
    module_name, _, name = class_name.rpartition(".")
    if module_prefix:
        target = f"{module_prefix}.{module_name}" if module_name else module_prefix
    elif module_name:
        target = module_name
    else:
        raise ImportError("module name is not defined.")
    found = getattr(importlib.import_module(target), name, None)
    if found is None:
        raise ImportError(f"class:{name} not found in module:{module_name}.")
    return found
