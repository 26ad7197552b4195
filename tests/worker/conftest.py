"""Fixtures for the worker runtime tests: model directories with handlers, and request batches."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

Request = dict[str, Any]


def _request(
    body: Any,
    *,
    request_id: str = "r0",
    content_type: str = "application/json",
    name: str = "body",
    headers: Mapping[str, str] | None = None,
) -> Request:
    """One request in the seed's batch shape; non-bytes bodies are sent as JSON."""
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    request: Request = {
        "requestId": request_id.encode(),
        "parameters": [{"name": name, "contentType": content_type, "value": value}],
    }
    if headers:
        request["headers"] = [
            {"name": key.encode(), "value": val.encode()} for key, val in headers.items()
        ]
    return request


@pytest.fixture
def make_request() -> Callable[..., Request]:
    return _request


@pytest.fixture
def make_batch() -> Callable[[Sequence[Any]], list[Request]]:
    """A batch with one JSON request per body, ids r0, r1, ..."""

    def build(bodies: Sequence[Any]) -> list[Request]:
        return [_request(body, request_id=f"r{i}") for i, body in enumerate(bodies)]

    return build


@pytest.fixture
def make_model_dir(tmp_path: Path) -> Callable[..., Path]:
    """Writes a model directory: MANIFEST.json, handler source and optional config and files."""
    counter = iter(range(1000))

    def build(
        handler_source: str = "",
        *,
        handler: str = "handler.py",
        module_file: str = "handler.py",
        config: str | None = None,
        envelope: str | None = None,
        files: Mapping[str, str] | None = None,
        model: Mapping[str, str] | None = None,
    ) -> Path:
        directory = tmp_path / f"model{next(counter)}"
        (directory / "MAR-INF").mkdir(parents=True)
        entry: dict[str, str] = {"modelName": "tiny", "handler": handler, "modelVersion": "1.0"}
        if handler_source:
            (directory / module_file).write_text(textwrap.dedent(handler_source))
        if config is not None:
            (directory / "model_config.yaml").write_text(textwrap.dedent(config))
            entry["configFile"] = "model_config.yaml"
        if envelope is not None:
            entry["envelope"] = envelope
        entry.update(model or {})
        for name, text in (files or {}).items():
            (directory / name).write_text(textwrap.dedent(text))
        manifest = {"runtime": "python", "model": entry, "archiverVersion": "0.12.0"}
        (directory / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))
        return directory

    return build


ECHO_HANDLER = """
    from ts.utils.util import PredictionException


    class Echo:
        def initialize(self, context):
            self.context = context

        def handle(self, data, context):
            out = []
            for row in data:
                body = row.get("data") or row.get("body")
                if isinstance(body, dict) and "raise" in body:
                    kind = body["raise"]
                    if kind == "prediction":
                        raise PredictionException("poisoned request", 422)
                    if kind == "memory":
                        raise MemoryError()
                    raise ValueError("handler bug")
                out.append(body)
            return out
"""
"""Returns each request's body; a body `{"raise": kind}` makes the whole batch fail."""


@pytest.fixture
def echo_handler() -> str:
    return ECHO_HANDLER
