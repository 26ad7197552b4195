"""Streaming partial answers from inside `handle()`, as TorchServe's handlers do.

TorchServe writes an extra response frame to its socket; marserve builds the same per-request
results as a final answer and hands them to the context's sink, which the serving process sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marserve import responses
from marserve.context import Context


def send_intermediate_predict_response(
    ret: Sequence[Any],
    req_id_map: Mapping[int, str],
    message: str,
    code: int,
    context: Context,
) -> None:
    """Sends `ret[idx]` to request `req_id_map[idx]` now; `handle()`'s return ends the stream.

    `message` and `code` are TorchServe's batch-level frame fields; per-request status comes from
    the context, as for final answers.
    """
    del message, code
    for idx, request_id in req_id_map.items():
        result = responses.success(idx=idx, request_id=request_id, value=ret[idx], context=context)
        context.send_intermediate(result)
