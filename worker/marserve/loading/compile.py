"""`torch.compile` as the model YAML asks, without ever costing the worker its model.

Reads TorchServe's `pt2: {compile: {...}}` block and its older `pt2: <backend>` / `pt2: {backend:
...}` forms. Compilation is lazy, so a broken backend usually fails at the first call, not at
`torch.compile`: the model is wrapped so that such a failure switches it to eager for good, with a
warning, and the request that hit it is answered by the eager model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

logger = logging.getLogger(__name__)


def compile_options(model_yaml_config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `torch.compile` keyword arguments the YAML asks for, or None when it asks for none.

    A `compile` block without `enable` counts as enabled; `enable: false` and `export` (the
    model is already compiled ahead of time) switch compilation off.
    """
    pt2 = model_yaml_config.get("pt2")
    if pt2 is None:
        return None
    if isinstance(pt2, str):
        logger.warning("'pt2: <backend>' is deprecated; use 'pt2: {compile: {backend: ...}}'")
        return {"backend": pt2}
    if not isinstance(pt2, Mapping):
        raise ValueError(f"model YAML: pt2 must be a backend name or a mapping, not {pt2!r}")
    if "compile" in pt2:
        block = pt2["compile"] or {}
        if not isinstance(block, Mapping):
            raise ValueError(f"model YAML: pt2.compile must be a mapping, not {block!r}")
        if not block.get("enable", True):
            return None
        return {key: value for key, value in block.items() if key != "enable"}
    if "export" in pt2:
        return None
    logger.warning("'pt2: {backend: ...}' is deprecated; use 'pt2: {compile: {backend: ...}}'")
    return dict(pt2)


def compile_model(model: Any, options: Mapping[str, Any]) -> Any:
    """Returns the model compiled with `options`, or the model itself when compiling fails."""
    if not isinstance(model, torch.nn.Module):
        logger.warning("torch.compile skipped: %s is not a torch.nn.Module", type(model).__name__)
        return model
    try:
        compiled = torch.compile(model, **options)
    except Exception as error:
        logger.warning("torch.compile(%s) failed, running eager: %s", _describe(options), error)
        return model
    logger.info("model compiled with torch.compile(%s)", _describe(options))
    return EagerFallback(model, compiled, options=options)


class EagerFallback(torch.nn.Module):
    """Runs the compiled model; if it fails where the eager model succeeds, stays eager for good.

    Errors that the eager model raises too (bad input) are the caller's, not the compiler's:
    those are raised unchanged and the compiled model is kept.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        compiled: Callable[..., Any],
        *,
        options: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.module = module
        self.__dict__["_compiled"] = compiled
        self.__dict__["_options"] = dict(options)

    @property
    def is_compiled(self) -> bool:
        return self.__dict__["_compiled"] is not None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self.__dict__["_compiled"]
        if compiled is None:
            return self.module(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as compiled_error:
            result = self.module(*args, **kwargs)
            logger.warning(
                "torch.compile(%s) failed at run time, running eager from now on: %s",
                _describe(self.__dict__["_options"]),
                compiled_error,
            )
            self.__dict__["_compiled"] = None
            return result

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_modules"]["module"], name)


def _describe(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in options.items())
