"""Management port routes: list and describe models, their workers and queues (read-only).

Registering models over HTTP is deliberately absent: models come from the pod spec, and an endpoint
that loads code from a URL is how TorchServe's management API became an attack path.
"""

from __future__ import annotations

from aiohttp import web

from marserve.server.served_models import ServedModels


class ManagementRoutes:
    """Handlers of the management API."""

    def __init__(self, models: ServedModels) -> None:
        self.models = models

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/models", self.list_models)
        app.router.add_get("/models/{model}", self.describe)
        app.router.add_get("/models/{model}/{version}", self.describe)

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response(self.models.listing())

    async def describe(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(self.models.descriptions(info["model"], info.get("version")))
