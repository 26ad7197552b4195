"""Errors the user can act on: every failure becomes JSON `{"code", "type", "message"}`."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from marserve import error_body


class ServingError(Exception):
    """A request failed with an HTTP status, a short type name and a message for the user."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.error_type, self.message, headers=self.headers)


def error_response(
    status: int, error_type: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body.encode(status, error_type, message),
        content_type="application/json",
        headers=headers,
    )


def model_not_found(model: str, version: str | None = None) -> ServingError:
    what = f"Model {model!r}" + (f" version {version!r}" if version else "")
    return ServingError(404, "ModelNotFoundException", f"{what} is not served here")


def worker_died(model: str, detail: str) -> ServingError:
    return ServingError(
        503, "WorkerDiedException", f"The worker for model {model!r} died: {detail}; retry"
    )
