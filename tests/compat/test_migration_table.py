"""The README's "Migrating from TorchServe" table, checked against the code where a claim can
be checked mechanically; the differential tests (`make compat`) check the rest against
TorchServe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marserve import service
from marserve.server import errors, options, routes_inference
from marserve.server.app import Server
from marserve.server.config import ServerConfig
from marserve.server.openapi import document

README = Path(__file__).resolve().parents[2] / "README.md"
COLUMNS = 3


def table() -> dict[str, tuple[str, str]]:
    """Area -> (TorchServe, marserve), from the section's one table."""
    section = README.read_text().split("## Migrating from TorchServe", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]
    assert all(len(row) == COLUMNS for row in cells)
    return {area: (torchserve, marserve) for area, torchserve, marserve in cells}


def inference_paths() -> dict[str, set[str]]:
    inference, _ = Server(ServerConfig(), [])._apps()["inference"]
    paths = document(inference.router, version="0")["paths"]
    return {path: set(item) for path, item in paths.items()}


def test_same_urls_are_routes() -> None:
    torchserve, marserve = table()["URLs and ports"]
    assert marserve == "same"
    paths = inference_paths()
    for url in re.findall(r"`(/[^`]+)`", torchserve):
        for path in {url.replace("[/{version}]", ""), url.replace("[/{version}]", "/{version}")}:
            assert path in paths, path


def test_methods_row_matches_the_routes() -> None:
    _, marserve = table()["methods on predictions and explanations"]
    listed = re.findall(r"`([A-Z]+)`", marserve)
    assert listed[:-1] == list(routes_inference.PREDICTION_METHODS) and listed[-1] == "OPTIONS"
    paths = inference_paths()
    for path in ("/predictions/{model}", "/explanations/{model}/{version}"):
        assert paths[path] == {method.lower() for method in listed[:-1]}


@pytest.mark.parametrize(
    ("area", "error"),
    [
        ("unknown model or version", errors.model_not_found("m")),
        ("unknown model or version", errors.model_not_found("m", "2.0")),
    ],
)
def test_error_rows_name_the_types_marserve_sends(area: str, error: errors.ServingError) -> None:
    torchserve, marserve = table()[area]
    assert marserve == "same body" and f"`{error.error_type}`" in torchserve


def test_failing_handler_row_names_the_type_marserve_sends() -> None:
    torchserve, marserve = table()["failing handler"]
    assert marserve == "same body" and f"`{service.FAILURE_TYPE}`" in torchserve


def test_kept_differences_are_stated() -> None:
    rows = table()
    assert "429" in rows["queue full"][1] and "503" in rows["queue full"][0]
    assert "absent on purpose" in rows["model registration over HTTP"][1]
    assert rows["management API"][1].startswith("read-only")


def test_config_keys_row_lists_exactly_the_keys_read() -> None:
    _, marserve = table()["config.properties keys read"]
    every = (*options.OPTIONS, *options.MODEL_OPTIONS)
    read = {option.properties_key for option in every if option.properties_key}
    addresses = {f"{kind}_address" for kind in ("inference", "management", "metrics")}
    assert set(re.findall(r"`(\w+)`", marserve)) == read | addresses | {"load_models"}
