"""How a failed call reads in gRPC: one mapping from marserve's errors to gRPC status codes.

Every gRPC service raises the same `ServingError` the HTTP routes raise, and this table turns its
HTTP status into the gRPC code, so a model answers the same failure the same way on every port.
The reverse, `HTTP_STATUS`, is what TorchServe's Requests2XX/4XX/5XX count for a gRPC call.
"""

from __future__ import annotations

import grpc

from marserve.results import PredictionResult
from marserve.server.errors import ServingError

# A handler's own failure (its result was not 2xx), as opposed to the server refusing the call.
PREDICTION_ERROR = "PredictionError"

CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def grpc_code(error: ServingError) -> grpc.StatusCode:
    """The gRPC code of an error: by its HTTP status, except that a handler's own 5xx (a failed
    prediction) is INTERNAL, not UNAVAILABLE: retrying elsewhere will not help."""
    if error.error_type == PREDICTION_ERROR and error.status >= 500 and error.status != 507:
        return grpc.StatusCode.INTERNAL
    code = CODES.get(error.status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if error.status < 500 else grpc.StatusCode.INTERNAL


def prediction_error(result: PredictionResult) -> ServingError:
    """A handler's failed result as the error a gRPC call ends with, its body as the message."""
    return ServingError(result.status, PREDICTION_ERROR, result.body.decode(errors="replace"))


def invalid_argument(message: str) -> ServingError:
    return ServingError(400, "InvalidArgument", message)
