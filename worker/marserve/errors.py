"""The exception a handler raises to choose the HTTP status of a failed prediction.

Handlers written for TorchServe raise `PredictionException(message, code)`; the Service turns it
into that status and message for the requests it failed, so the class keeps TorchServe's shape.
"""

from __future__ import annotations


class PredictionException(Exception):  # noqa: N818 - the name handlers import from TorchServe
    """A handler-chosen failure: `message` goes to the client with status `error_code`."""

    def __init__(self, message: str, error_code: int = 500) -> None:
        self.message = message
        self.error_code = error_code
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} : {self.error_code}"


class BatchResponseMismatch(Exception):  # noqa: N818 - named after the message it carries
    """A handler answered a different number of items than it was given (a handler bug)."""
