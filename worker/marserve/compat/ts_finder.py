"""The `sys.meta_path` finder that maps TorchServe's module names onto marserve's.

Names in `unsupported.REASONS` are found too, so that importing one raises a ModuleNotFoundError
that says why marserve does not offer it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

from marserve.compat.unsupported import REASONS
from marserve.context import SERVER_VERSION

ALIASES: dict[str, str] = {
    "ts.context": "marserve.context",
    "ts.service": "marserve.service",
    "ts.model_loader": "marserve.model_loader",
    "ts.utils.util": "marserve.utils",
    "ts.torch_handler": "marserve.handlers",
    "ts.torch_handler.request_envelope": "marserve.envelopes",
    "ts.metrics.dimension": "marserve.handler_metrics",
    "ts.metrics.metric_type_enum": "marserve.handler_metrics",
    "ts.metrics.metric_cache_errors": "marserve.handler_metrics",
    "ts.metrics.metrics_store": "marserve.compat.metrics_store",
    "ts.metrics.metric": "marserve.compat.metrics_store",
    "ts.metrics.unit": "marserve.compat.metrics_store",
    "ts.handler_utils.utils": "marserve.compat.handler_utils",
    "ts.handler_utils.timer": "marserve.handlers.timer",
    "ts.protocol.otf_message_handler": "marserve.streaming",
    "ts.torch_handler.unit_tests.test_utils.mock_context": "marserve.compat.mock_context",
}
"""Exact `ts` names and their marserve modules; children of the two packages map by name."""

PACKAGE_PREFIXES = ("ts.torch_handler.request_envelope.", "ts.torch_handler.")
"""Aliased packages whose submodules map one to one (`ts.torch_handler.X` → `handlers.X`)."""

NAMESPACES = (
    "ts",
    "ts.utils",
    "ts.metrics",
    "ts.handler_utils",
    "ts.protocol",
    "ts.torch_handler.unit_tests",
    "ts.torch_handler.unit_tests.test_utils",
)
"""Empty `ts` packages that only exist to hold the aliased modules."""


class TsAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `ts.*` names and loads them by putting the marserve module in `sys.modules`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in NAMESPACES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname in REASONS:
            return importlib.machinery.ModuleSpec(fullname, self)
        if resolve(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        if name in NAMESPACES:
            if name == "ts":
                module.__dict__["__version__"] = SERVER_VERSION
            return
        if name in REASONS:
            raise ModuleNotFoundError(
                f"{name} is not provided by marserve: {REASONS[name]}", name=name
            )
        target = resolve(name)
        assert target is not None
        # The import system reads sys.modules back after exec_module, so the alias IS the module.
        sys.modules[name] = importlib.import_module(target)


def resolve(fullname: str) -> str | None:
    """The marserve module behind a `ts` name, or None when marserve has no such module."""
    target = ALIASES.get(fullname)
    if target is None:
        for prefix in PACKAGE_PREFIXES:
            if fullname.startswith(prefix):
                target = ALIASES[prefix.rstrip(".")] + "." + fullname.removeprefix(prefix)
                break
    if target is None:
        return None
    try:
        return target if importlib.util.find_spec(target) is not None else None
    except ImportError:
        return None


def is_installed() -> bool:
    return any(type(finder).__name__ == TsAliasFinder.__name__ for finder in sys.meta_path)


def install() -> bool:
    """Installs the finder once; returns whether `ts.*` now resolves to marserve.

    Placed first on `sys.meta_path` so the path finder never loads a second copy of a marserve
    file under its `ts` name; skipped when a real TorchServe `ts` package is importable.
    """
    if is_installed():
        return True
    if importlib.util.find_spec("ts") is not None:
        return False
    sys.meta_path.insert(0, TsAliasFinder())
    return True
