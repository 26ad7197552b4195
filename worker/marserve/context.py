"""What a handler sees of the worker: model facts, per-request headers and response settings.

The method set and the `system_properties` keys follow TorchServe 0.12 so that handlers written
for it run unchanged. Per-request state lives in one `RequestProcessor` per request of the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marserve.handler_metrics import HandlerMetrics
    from marserve.results import PredictionResult

SERVER_NAME = "MMS"
SERVER_VERSION = "0.12.0"
"""The TorchServe version whose handler contract marserve implements (handlers may compare it)."""


class NoRequestError(RuntimeError):
    """Request state was asked for while no batch is being handled (outside `handle()`)."""


class RequestProcessor:
    """One request's headers in, and the status, reason and headers its response should carry."""

    def __init__(self, request_header: Mapping[str, Any]) -> None:
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header: dict[str, Any] = dict(request_header)

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)


class Context:
    """Model-level facts fixed at load time plus the current batch's request state."""

    def __init__(  # noqa: PLR0917 - TorchServe's positional signature, which handlers call
        self,
        model_name: str,
        model_dir: str,
        manifest: Mapping[str, Any] | None,
        batch_size: int,
        gpu: int | None,
        mms_version: str = SERVER_VERSION,
        limit_max_image_pixels: bool = True,
        metrics: HandlerMetrics | None = None,
        model_yaml_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest: dict[str, Any] = dict(manifest or {})
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu,
            "batch_size": batch_size,
            "server_name": SERVER_NAME,
            "server_version": mms_version,
            "limit_max_image_pixels": limit_max_image_pixels,
        }
        self.model_yaml_config: dict[str, Any] = dict(model_yaml_config or {})
        self.metrics = metrics
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] | None = None
        self.stopping_criteria: list[Callable[[Any], bool]] | None = None
        self.cl_socket: None = None
        """Always None: results travel as values, never over a socket the handler could write to."""
        self.intermediate_response_sink: Callable[[PredictionResult], None] | None = None
        """Set by the serving process; `send_intermediate_predict_response` streams through it."""
        self.intermediate_responses_sent = 0
        self.header_key_sequence_id = os.environ.get(
            "TS_REQUEST_SEQUENCE_ID", "ts_request_sequence_id"
        )

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def _processor(self, idx: int) -> RequestProcessor:
        if self.request_processor is None:
            raise NoRequestError(
                "no request is being processed: request headers exist only in handle()"
            )
        return self.request_processor[idx]

    def get_request_id(self, idx: int = 0) -> str | None:
        if self.request_ids is None:
            return None
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._processor(idx).get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self._processor(idx).get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self._processor(idx)
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor is not None:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self.request_processor or ():
            processor.report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._processor(idx).get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._processor(idx).add_response_property(key, value)

    def send_intermediate(self, result: PredictionResult) -> None:
        """Streams one partial answer ahead of the final one, through the server's sink."""
        if self.intermediate_response_sink is None:
            raise RuntimeError(
                "streaming is not available: no intermediate response sink is set on the context"
                " (it is set by the serving worker process)"
            )
        self.intermediate_responses_sent += 1
        self.intermediate_response_sink(result)

    def get_sequence_id(self, idx: int) -> str | None:
        """The stateful-inference sequence id the client sent in its sequence header, if any."""
        value = self.get_request_header(idx, self.header_key_sequence_id)
        return None if value is None else str(value)


def request_header(context: Any, idx: int, key: str) -> Any:
    """Header `key` of request `idx` through TorchServe's public `get_request_header`, or None.

    Handlers and envelopes call this instead of reading marserve's `request_processor`, so they
    also run with TorchServe's `MockContext` or any test double offering the public methods;
    marserve's own context outside a request answers None rather than raising.
    """
    if context is None:
        return None
    try:
        return context.get_request_header(idx, key)
    except NoRequestError:
        return None
