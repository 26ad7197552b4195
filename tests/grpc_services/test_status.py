"""The one mapping from marserve's errors to gRPC status codes, for every status a request can
end with: the server's refusals by their HTTP status, a handler's own failure as INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from marserve.grpc.status import grpc_code, prediction_error
from marserve.results import PredictionResult
from marserve.server.errors import ServingError, model_not_found, worker_died

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ServingError(400, "BadRequest", "x"), Code.INVALID_ARGUMENT),
        (ServingError(401, "Unauthorized", "x"), Code.UNAUTHENTICATED),
        (model_not_found("m", "2.0"), Code.NOT_FOUND),
        (ServingError(429, "TooManyRequests", "x"), Code.RESOURCE_EXHAUSTED),
        (ServingError(501, "Unimplemented", "x"), Code.UNIMPLEMENTED),
        (ServingError(503, "ModelLoadFailed", "x"), Code.UNAVAILABLE),
        (ServingError(503, "ServiceUnavailable", "x"), Code.UNAVAILABLE),
        (worker_died("m", "exit -9"), Code.UNAVAILABLE),
        (ServingError(504, "ResponseTimeout", "x"), Code.DEADLINE_EXCEEDED),
        (ServingError(500, "ResponseTooLarge", "x"), Code.INTERNAL),
        (ServingError(418, "Teapot", "x"), Code.INVALID_ARGUMENT),
        (ServingError(599, "Odd", "x"), Code.INTERNAL),
    ],
    ids=lambda value: value.name if isinstance(value, Code) else "",
)
def test_server_errors_map_by_status(error: ServingError, code: grpc.StatusCode) -> None:
    assert grpc_code(error) == code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, Code.INTERNAL),  # TorchServe's "Prediction failed": the handler raised
        (500, Code.INTERNAL),
        (507, Code.RESOURCE_EXHAUSTED),  # out of (GPU) memory
        (400, Code.INVALID_ARGUMENT),  # PredictionException(400): the handler refused the input
        (404, Code.NOT_FOUND),
    ],
)
def test_a_handlers_failed_result_maps_as_the_handler_meant_it(
    status: int, code: grpc.StatusCode
) -> None:
    result = PredictionResult("r1", status, b"Prediction failed", "application/json")
    error = prediction_error(result)
    assert (grpc_code(error), error.message) == (code, "Prediction failed")
