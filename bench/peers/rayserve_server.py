"""Ray Serve on the bench's model, as Ray Serve's batching docs write a deployment.

One replica with `@serve.batch(max_batch_size, batch_wait_timeout_s)` behind Ray's HTTP proxy on
`/predictions/<name>`; it reads the raw body as marserve does (a JSON list of floats, or PNG /
JPEG bytes). A local Ray instance starts first, with no dashboard and a small object store.
"""

from __future__ import annotations

import argparse
import os
import signal

import peer_model
import ray
from ray import serve
from starlette.requests import Request

OBJECT_STORE_BYTES = 100 * 1024 * 1024
MAX_ONGOING_REQUESTS = 128  # above max_batch_size and the bench's 64 connections, as Ray advises


def deployment(args: argparse.Namespace) -> serve.Application:
    max_batch_size = args.max_batch_size
    wait_s = args.max_batch_delay_ms / 1000

    @serve.deployment(num_replicas=1, max_ongoing_requests=MAX_ONGOING_REQUESTS)
    class BenchDeployment:
        def __init__(self, model_file: str) -> None:
            self.model = peer_model.TorchScriptModel(model_file)

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)
        async def predict(self, bodies: list[bytes]) -> list[list[float]]:
            return self.model.predict([peer_model.row_tensor(body) for body in bodies])

        async def __call__(self, request: Request) -> list[float]:
            return await self.predict(await request.body())

    return BenchDeployment.bind(str(args.model_file))


def main() -> None:
    args = peer_model.arguments(__doc__)
    ray.init(
        num_cpus=len(os.sched_getaffinity(0)),
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(deployment(args), name=args.name, route_prefix=f"/predictions/{args.name}")
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.sigwait(stop_signals)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
