"""The data plane between HTTP routes and model runners: lookup, submit, deadline, metrics.

Routes decode a protocol into TorchServe's request shape and call `DataPlane.predict`; everything
about queues, deadlines and accounting happens here once for every protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from marserve.inference_request import InferenceRequest, Parameter
from marserve.results import PredictionResult
from marserve.server.batching import Job, StreamStart
from marserve.server.errors import ServingError, model_not_found
from marserve.server.scheduler import ModelScheduler


class DataPlane:
    """Serves requests for every model; owns readiness as the routes and probes see it."""

    def __init__(self, runners: Mapping[str, ModelScheduler]) -> None:
        self.runners = dict(runners)
        self.accepting = True

    @property
    def ready(self) -> bool:
        return self.accepting and all(runner.ready for runner in self.runners.values())

    def runner(self, model: str, version: str | None = None) -> ModelScheduler:
        runner = self.runners.get(model)
        if runner is None or (version not in (None, "", runner.source.version)):
            raise model_not_found(model, version)
        return runner

    async def predict(
        self,
        runner: ModelScheduler,
        *,
        request_id: str,
        parameters: Sequence[Parameter],
        headers: Sequence[tuple[str, str]],
    ) -> PredictionResult | tuple[StreamStart, Job]:
        """Queues one request and waits for its answer, or raises a ServingError (504 at deadline).

        A streamed answer comes back as its first chunk plus the job whose `stream` has the rest.
        """
        job = Job(
            request_id=request_id,
            request=InferenceRequest(
                request_id=request_id, parameters=tuple(parameters), headers=tuple(headers)
            ),
            loop=asyncio.get_running_loop(),
        )
        metrics = runner.metrics
        try:
            runner.submit(job)
        except ServingError as error:
            metrics.request_done(code=error.status, total_s=0.0, queue_s=-1.0)
            raise
        runner.inflight += 1
        runner.deadlines.add(job)
        code = 499  # the client went away before an answer
        try:
            outcome = await job.outcome
            if isinstance(outcome, StreamStart):
                code = outcome.first.status
                return outcome, job
            code = outcome.status
            return outcome
        except ServingError as error:
            code = error.status
            raise
        finally:
            runner.inflight -= 1
            now = time.monotonic()
            queue_s = job.dispatched - job.enqueued if job.dispatched >= 0 else -1.0
            metrics.request_done(code=code, total_s=now - job.enqueued, queue_s=queue_s)
