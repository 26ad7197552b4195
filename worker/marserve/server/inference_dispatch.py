"""The inference port's hot routes, answered without aiohttp's router.

`POST /predictions/{model}[/{version}]` and Open Inference Protocol `/infer` are most of a
server's traffic; for them the request's path is split once and the handler is called through the
port's middleware directly, skipping the router's regex walk, its match-info objects and the
middleware chain aiohttp builds per request. Any request that is not plainly one of these (another
path or method, percent-escapes, dot segments, `Expect: 100-continue`) goes to the aiohttp
application, which serves every route, the hot ones included, so behaviour is the same either way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from marserve.server.routes_inference import PREDICTION_METHODS, InferenceRoutes
from marserve.server.routes_v2 import V2Routes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Characters that make aiohttp's router read a path differently from a plain split ('%' is
# decoded, '.' segments are collapsed) or that its patterns exclude from a path parameter.
_UNPLAIN = frozenset("%{}#")
_PREDICTION_METHODS = frozenset(PREDICTION_METHODS)


@dataclasses.dataclass(frozen=True)
class HotRoutes:
    """The handlers of the hot routes and the middleware of the port they are served on."""

    inference: InferenceRoutes
    v2: V2Routes
    middleware: Middleware


# Set on the inference application; its runner then serves the hot routes itself.
HOT_ROUTES = web.AppKey("hot_routes", HotRoutes)


def runner(app: web.Application, **options: Any) -> web.AppRunner:
    """The application's runner: one with the hot path when the app carries `HOT_ROUTES`."""
    if HOT_ROUTES in app:
        return InferenceRunner(app, **options)
    return web.AppRunner(app, **options)


def hot_handler(method: str, raw_path: str, routes: HotRoutes) -> Handler | None:
    """The handler of a hot route with its model and version bound, or None for any request the
    application should route."""
    parts = _plain_segments(raw_path)
    if parts is None:
        return None
    if parts[0] == "predictions":
        return _prediction(method, parts, routes.inference)
    if parts[0] == "v2":
        return _v2_infer(method, parts, routes.v2)
    return None


def _plain_segments(raw_path: str) -> list[str] | None:
    """The path's segments after the leading slash, or None unless the router would read them
    as they are."""
    path = raw_path.partition("?")[0]
    if not path.startswith("/") or not _UNPLAIN.isdisjoint(path):
        return None
    parts = path[1:].split("/")
    if any(not part or part in (".", "..") for part in parts):
        return None
    return parts


def prediction_route(method: str, raw_path: str) -> tuple[str, str | None] | None:
    """The model and version of a plain `/predictions/{model}[/{version}]` call, or None."""
    parts = _plain_segments(raw_path)
    if parts is None or parts[0] != "predictions":
        return None
    return _prediction_parts(method, parts)


def _prediction_parts(method: str, parts: list[str]) -> tuple[str, str | None] | None:
    """Model and version from `/predictions/{model}[/{version}]`; a model name has no ':'."""
    if len(parts) not in (2, 3) or method not in _PREDICTION_METHODS or ":" in parts[1]:
        return None
    return parts[1], parts[2] if len(parts) == 3 else None


def _prediction(method: str, parts: list[str], inference: InferenceRoutes) -> Handler | None:
    route = _prediction_parts(method, parts)
    if route is None:
        return None
    return functools.partial(inference.predict, model=route[0], version=route[1])


def _v2_infer(method: str, parts: list[str], v2: V2Routes) -> Handler | None:
    """`POST /v2/models/{model}[/versions/{version}]/infer`."""
    if method != "POST" or parts[-1] != "infer" or parts[1:2] != ["models"]:
        return None
    if len(parts) == 4:
        return functools.partial(v2.infer_model, model=parts[2], version=None)
    if len(parts) == 6 and parts[3] == "versions":
        return functools.partial(v2.infer_model, model=parts[2], version=parts[4])
    return None


def dispatcher(
    routes: HotRoutes, application: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The inference port's request handler: hot routes through the port's middleware, the rest
    to the application's own handler."""
    middleware = routes.middleware

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if hdrs.EXPECT not in request.headers:
            handler = hot_handler(request.method, request.raw_path, routes)
            if handler is not None:
                # The application's request factory makes every request a web.Request.
                return middleware(cast(web.Request, request), handler)
        return application(request)

    return dispatch


class InferenceRunner(web.AppRunner):
    """An AppRunner whose server sends the hot routes past the application's router."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.request_handler = dispatcher(self.app[HOT_ROUTES], server.request_handler)
        return server
