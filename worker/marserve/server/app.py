"""The server: three aiohttp apps (inference, management, metrics) and the gRPC ports over the
served models.

It owns the life cycle: start the workers and the listeners, and on shutdown turn readiness off at
once, let in-flight requests finish within the grace period, then stop workers and listeners.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from marserve.server import inference_dispatch, openapi, routes_v2
from marserve.server.config import ServerConfig
from marserve.server.errors import ErrorFormat
from marserve.server.inference_connection import PredictionPort
from marserve.server.metrics import CONTENT_TYPE, ServerMetrics
from marserve.server.middleware import (
    expected_authorization,
    make_middleware,
    read_token,
    request_ids,
)
from marserve.server.model_sources import ModelSource
from marserve.server.open_inference import server_version
from marserve.server.protocol_log import ProtocolLog
from marserve.server.routes_inference import InferenceRoutes
from marserve.server.routes_management import ManagementRoutes
from marserve.server.routes_v2 import V2Routes
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels

if TYPE_CHECKING:
    from marserve.grpc.listener import GrpcListener, GrpcService

log = logging.getLogger("marserve.server")
# The inference port's routes that answer errors in their own protocol's body.
ERROR_FORMATS = {routes_v2.PATH_PREFIX: ErrorFormat.OPEN_INFERENCE}
LISTEN_BACKLOG = 128  # aiohttp's, which the other ports keep


class Server:
    """Everything `marserve serve` runs, built from one config and the resolved models."""

    def __init__(self, config: ServerConfig, sources: Sequence[ModelSource]) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.models = ServedModels(
            {
                source.name: ModelScheduler(
                    source=source,
                    config=config,
                    metrics=self.metrics.for_model(model=source.name, version=source.version),
                )
                for source in sources
            }
        )
        self._runners: list[web.AppRunner] = []
        self._grpc: list[GrpcListener] = []
        self._listeners: list[asyncio.Server] = []
        self._prediction_port: PredictionPort | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self._token = read_token(str(config.token_file) if config.token_file else None)

    def _apps(self) -> dict[str, tuple[web.Application, int]]:
        middleware = make_middleware(metrics=self.metrics, token=self._token)
        size = self.config.max_request_size
        inference_middleware = make_middleware(
            metrics=self.metrics, token=self._token, error_formats=ERROR_FORMATS
        )
        inference = web.Application(middlewares=[inference_middleware], client_max_size=size)
        limit = self.config.max_response_size
        inference_routes = InferenceRoutes(self.models, max_response_size=limit)
        inference_routes.add_to(inference)
        v2_routes = V2Routes(self.models, max_response_size=limit)
        v2_routes.add_to(inference)
        inference[inference_dispatch.HOT_ROUTES] = inference_dispatch.HotRoutes(
            inference=inference_routes, v2=v2_routes, middleware=inference_middleware
        )
        openapi.add_document_route(inference, version=server_version(), error_formats=ERROR_FORMATS)
        management = web.Application(middlewares=[middleware], client_max_size=size)
        ManagementRoutes(self.models).add_to(management)
        metrics = web.Application(middlewares=[make_middleware(metrics=self.metrics, token=None)])
        metrics.router.add_get("/metrics", self._metrics)
        return {
            "inference": (inference, self.config.inference_port),
            "management": (management, self.config.management_port),
            "metrics": (metrics, self.config.metrics_port),
        }

    def _grpc_listeners(self) -> dict[str, tuple[GrpcListener, int]]:
        """A listener with its services for each gRPC port that is on (port 0 is off); a new gRPC
        protocol adds its service to a port's list here. grpcio and the stubs are imported only
        when a port is on: they cost about 0.1 s of start-up and 11 MB of memory."""
        ports = {
            "grpc-inference": self.config.grpc_inference_port,
            "grpc-management": self.config.grpc_management_port,
        }
        if not any(ports.values()):
            return {}
        from marserve.grpc.listener import GrpcListener
        from marserve.grpc.oip.service import OpenInferenceGrpc
        from marserve.grpc.torchserve.inference import TorchServeInference
        from marserve.grpc.torchserve.management import TorchServeManagement

        limit = self.config.max_response_size
        services: dict[str, list[GrpcService]] = {
            "grpc-inference": [
                TorchServeInference(self.models, max_response_size=limit).service(),
                OpenInferenceGrpc(self.models, max_response_size=limit).service(),
            ],
            "grpc-management": [TorchServeManagement(self.models).service()],
        }
        return {
            name: (
                GrpcListener(
                    services[name],
                    metrics=self.metrics,
                    token=self._token,
                    max_receive_size=self.config.max_request_size,
                ),
                port,
            )
            for name, port in ports.items()
            if port
        }

    async def start(self) -> None:
        """Binds the three ports, then starts the workers (so /ping answers 503 while loading)."""
        for name, (app, port) in self._apps().items():
            runner = inference_dispatch.runner(
                app, access_log=None, handle_signals=False, logger=ProtocolLog(self.metrics)
            )
            await runner.setup()
            self._runners.append(runner)
            if name == "inference":
                self.addresses[name] = await self._listen_for_predictions(runner, port)
                continue
            site = web.TCPSite(runner, self.config.host, port)
            await site.start()
            host, bound = runner.addresses[0][:2]
            self.addresses[name] = (host, bound)
        for name, (listener, port) in self._grpc_listeners().items():
            self.addresses[name] = (self.config.host, await listener.start(self.config.host, port))
            self._grpc.append(listener)
        for scheduler in self.models.by_name.values():
            scheduler.start()
        log.info(
            "serving %s; inference %s:%d, management %s:%d, metrics %s:%d",
            ", ".join(self.models.by_name),
            *self.addresses["inference"],
            *self.addresses["management"],
            *self.addresses["metrics"],
        )
        for name in ("grpc-inference", "grpc-management"):
            if name in self.addresses:
                log.info("%s %s:%d", name, *self.addresses[name])

    async def _listen_for_predictions(self, runner: web.AppRunner, port: int) -> tuple[str, int]:
        """The inference port: plain predictions answered by `inference_connection`, every other
        request by the runner's aiohttp server, to which such a connection is handed."""
        server = runner.server
        assert server is not None, "the runner is set up"
        self._prediction_port = PredictionPort(
            models=self.models,
            metrics=self.metrics,
            expected_authorization=expected_authorization(self._token),
            new_request_id=request_ids(),
            max_request_size=self.config.max_request_size,
            max_response_size=self.config.max_response_size,
            fallback=server,
        )
        listener = await asyncio.get_running_loop().create_server(
            self._prediction_port.connection,
            self.config.host,
            port,
            backlog=LISTEN_BACKLOG,
            reuse_address=True,
        )
        self._listeners.append(listener)
        host, bound = listener.sockets[0].getsockname()[:2]
        return host, bound

    async def shutdown(self) -> None:
        """Graceful stop: not ready at once, drain in-flight work, stop workers, close ports."""
        self.models.accepting = False
        log.info("shutting down: draining for up to %gs", self.config.grace_period_s)
        deadline = time.monotonic() + self.config.grace_period_s
        schedulers = list(self.models.by_name.values())
        await asyncio.gather(
            *(scheduler.drain(max(0.0, deadline - time.monotonic())) for scheduler in schedulers)
        )
        await asyncio.gather(*(scheduler.stop() for scheduler in schedulers))
        await asyncio.gather(
            *(listener.stop(max(0.0, deadline - time.monotonic())) for listener in self._grpc)
        )
        for listener in self._listeners:
            listener.close()
        if self._prediction_port is not None:
            self._prediction_port.close()
        for app_runner in self._runners:
            await app_runner.cleanup()
        log.info("stopped")

    async def _metrics(self, request: web.Request) -> web.Response:
        """All metrics, or those named by TorchServe's `?name[]=` query (repeatable)."""
        names = request.query.getall("name[]", [])
        return web.Response(
            body=self.metrics.exposition(names), headers={"Content-Type": CONTENT_TYPE}
        )
