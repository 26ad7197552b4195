"""What aiohttp reports about requests it refused before any route saw them.

aiohttp answers a request it cannot parse (an over-long request line or header, too many headers,
bytes that are not HTTP) with a 400 of its own and logs the parser's traceback at ERROR, so any
client could fill the logs with tracebacks, and the answer never reached the response counters.
Here such a refusal is one INFO line and counts as a response by its status, like every other
answer. Anything else aiohttp reports (a bug, not a client) keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from marserve.server.metrics import ServerMetrics

MESSAGE_LIMIT = 200  # a refused line can be kilobytes of whatever the client sent


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """The logger handed to aiohttp's connection handlers (`AppRunner(logger=...)`)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        super().__init__(logging.getLogger("marserve.server.http"), {})
        self._metrics = metrics

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, HttpProcessingError):
            self._metrics.response(error.code)
            message = str(error.message)[:MESSAGE_LIMIT]
            self.info("refused a malformed request (%d): %s", error.code, message)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)
