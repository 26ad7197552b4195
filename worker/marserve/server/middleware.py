"""What every request passes through: request id, bearer-token check, JSON errors, response count.

One middleware per port does all four, because each layer of aiohttp middleware costs a coroutine
call on the hot path.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

from marserve.server.config import ConfigError
from marserve.server.errors import (
    ErrorFormat,
    ServingError,
    error_format_for,
    error_response,
)
from marserve.server.http_io import REQUEST_ID
from marserve.server.metrics import ServerMetrics

log = logging.getLogger("marserve.server.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Kubernetes probes carry no token; the API description is public and static.
OPEN_PATHS = frozenset({"/ping", "/v2/health/live", "/v2/health/ready", "/openapi.json"})
ERROR_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
}


def read_token(path: str | None) -> bytes | None:
    """The expected bearer token, or None when auth is off."""
    if path is None:
        return None
    with open(path, "rb") as handle:
        token = handle.read().strip()
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def expected_authorization(token: bytes | None) -> bytes | None:
    """The `Authorization` value every protected call must carry, or None when auth is off."""
    return b"Bearer " + token if token is not None else None


def authorized(given: str, expected: bytes | None) -> bool:
    """Whether a call may pass: auth is off, or it carries the token (compared in constant time,
    so the answer's timing tells nothing about the token). Header bytes that are not UTF-8
    come back as they arrived, so such a token is refused (401), not an encoding error (500)."""
    return expected is None or hmac.compare_digest(given.encode(errors="surrogateescape"), expected)


def unauthorized() -> ServingError:
    return ServingError(401, "Unauthorized", "Missing or wrong 'Authorization: Bearer' token")


def log_answer(method: str, path: str, status: int, request_id: str, *, quiet: bool) -> None:
    """A warning for a server error (not on `quiet` paths, which probes call), else a debug
    line; each with the request id."""
    if status >= 500 and not quiet:
        log.warning("%s %s -> %d", method, path, status, extra={"request_id": request_id})
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s -> %d", method, path, status, extra={"request_id": request_id})


def request_ids() -> Callable[[], str]:
    """Ids for requests that came without X-Request-Id: a random 16-hex-digit prefix per server
    and a counter, 32 hex digits like a UUID, unique across restarts and replicas without a
    `uuid4` (an `os.urandom` call) per request."""
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):016x}"


def make_middleware(
    *,
    metrics: ServerMetrics,
    token: bytes | None,
    exempt: Collection[str] = OPEN_PATHS,
    error_formats: Mapping[str, ErrorFormat] | None = None,
) -> Middleware:
    """`error_formats` maps a path prefix (e.g. `/v2`) to its protocol's error body; other paths
    answer TorchServe's."""
    formats = dict(error_formats or {})

    def error_format(path: str) -> ErrorFormat:
        return error_format_for(path, formats)

    expected = expected_authorization(token)
    new_request_id = request_ids()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id") or new_request_id()
        request[REQUEST_ID] = request_id
        try:
            if request.path not in exempt and not authorized(
                request.headers.get("Authorization", ""), expected
            ):
                raise unauthorized()
            response = await handler(request)
        except ServingError as error:
            response = error.response(error_format(request.path))
        except web.HTTPException as error:
            response = _http_error(error, request, error_format(request.path))
        except ConnectionError:
            raise  # the client left mid-request: no one to answer, and not a server error
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path,
                          extra={"request_id": request_id})  # fmt: skip
            response = error_response(
                500,
                "InternalServerError",
                "Unexpected server error",
                error_format=error_format(request.path),
            )
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        metrics.response(response.status)
        log_answer(request.method, request.path, response.status, request_id,
                   quiet=request.path in exempt)  # fmt: skip
        return response

    return middleware


def _http_error(
    error: web.HTTPException, request: web.Request, error_format: ErrorFormat
) -> web.StreamResponse:
    status = error.status
    if status < 400:
        return error
    if status == 404:
        message = f"No route {request.method} {request.path}"
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.path}"
    else:
        message = error.text or error.reason
    headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
    return error_response(
        status,
        ERROR_TYPES.get(status, error.reason),
        message,
        headers=headers,
        error_format=error_format,
    )
