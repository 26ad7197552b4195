"""The one error type of archive handling.

Its message is a single line meant for a person: the CLI prints it and Kubernetes shows it as
the init container's termination message, so it never carries a traceback or a newline.
"""

from __future__ import annotations


class ArchiveError(ValueError):
    """An archive could not be written, fetched or unpacked; the message says why, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
