"""Lets handlers written for TorchServe import `ts.*` and get marserve's modules instead.

No top-level `ts` package is shipped: `install()` puts an import finder on `sys.meta_path` that
answers `ts.*` names with marserve modules (the very same module objects, so classes compare
equal). When TorchServe itself is importable, nothing is installed and its `ts` is used.
"""

from __future__ import annotations

from marserve.compat.ts_finder import ALIASES, TsAliasFinder, install, is_installed

__all__ = ["ALIASES", "TsAliasFinder", "install", "is_installed"]
