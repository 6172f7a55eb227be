"""Fast routes: hot endpoints served as plain ASGI, past FastAPI's routing and dependency
injection (which cost several times the work of a lean handler per request).

A service lists them in `Service.fast_routes` as (method, path, handler) with
`handler(request) -> Response`; `build_app` puts `FastRoutes` inside the CORS and HTTP-metrics
middleware, so those still apply. The same paths stay registered as FastAPI routes, which
document them in OpenAPI and serve any other method (405). A handler's `LlmwatchError` becomes
its problem+json here, since FastAPI's exception middleware sits below this one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import LlmwatchError
from shared.problems import from_error, problem_response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
FastRoute = tuple[str, str, Handler]  # (method, exact path, handler)


class FastRoutes:
    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], tuple[Handler, object]]) -> None:
        self.app = app
        self.routes = routes  # (method, path) -> (handler, the documented route, for metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.routes.get((scope.get("method", ""), scope.get("path", "")))
        if hit is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler, route = hit
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except LlmwatchError as exc:
            response = from_error(exc, scope["path"])
        except Exception:  # noqa: BLE001 - never a bare 500 page: problem+json and a log line
            log.exception("unhandled error on %s", scope["path"])
            response = problem_response(500, "internal error", instance=scope["path"])
        await response(scope, receive, send)
