"""Fast routes: hot endpoints served as plain ASGI, past FastAPI's routing and dependency
injection (which cost several times the work of a lean handler per request).

A service lists them in `Service.fast_routes` as (method, path, handler) with
`handler(request) -> Response`. `build_app` puts `FastRoutes` in front of the whole FastAPI app
(its per-request telemetry, body-limit and error middleware cost more than the handler), or,
when CORS is configured, inside the CORS middleware so that it still applies. The request
duration is recorded here. The same paths stay registered as FastAPI routes, which document
them in OpenAPI and serve any other method (405). A handler's `LlmwatchError` becomes its
problem+json here, since FastAPI's exception middleware is not in the way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import LlmwatchError
from shared.metrics import HttpMetrics
from shared.problems import from_error, problem_response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
FastRoute = tuple[str, str, Handler]  # (method, exact path, handler)


class FastRoutes:
    def __init__(
        self,
        app: ASGIApp,
        routes: dict[tuple[str, str], tuple[Handler, object]],
        http: HttpMetrics | None = None,
        streaming: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.routes = routes  # (method, path) -> (handler, the documented route, for metrics)
        self.http = http  # None when an outer HttpMetricsMiddleware already measures
        self.streaming = streaming  # long-lived responses (SSE): not in the duration histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.routes.get((scope.get("method", ""), scope.get("path", "")))
        if hit is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler, route = hit
        scope["route"] = route
        start = time.perf_counter()
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except LlmwatchError as exc:
            response = from_error(exc, scope["path"])
        except Exception:  # never a bare 500 page: problem+json and a log line
            log.exception("unhandled error on %s", scope["path"])
            response = problem_response(500, "internal error", instance=scope["path"])
        await response(scope, receive, send)
        if self.http is not None and scope["path"] not in self.streaming:
            elapsed = time.perf_counter() - start
            self.http.observe(scope["method"], route, response.status_code, elapsed)
