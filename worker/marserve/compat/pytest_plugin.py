"""`pytest -p marserve.compat.pytest_plugin`: handler tests written for TorchServe run on marserve.

Such tests import `ts.*` from their conftest files, before any marserve code runs, so the aliases
go in as soon as pytest starts loading conftests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marserve import compat

if TYPE_CHECKING:
    import pytest


def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    compat.install()


def pytest_report_header(config: pytest.Config) -> str:
    """Says which `ts` the tests run against, so a run on a real TorchServe is never mistaken."""
    if compat.is_installed():
        return "ts: marserve's TorchServe-compatible modules"
    return "ts: an installed TorchServe (marserve's aliases are not in use)"
