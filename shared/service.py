"""What a service is, and how one or several become one ASGI app (Loki-style targets).

Each `services/<name>/app.py` has `create_service(ctx) -> Service`. `build_app` mounts any set of
them on one FastAPI app: one port, one `/metrics`, one `/healthz`, an aggregated `/readyz`.
`llmwatch up` builds all four; `llmwatch serve X` builds one. A background task that dies takes
the process down (through `on_fatal`), so a supervisor restarts it instead of it running half-dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from shared import metrics as shared_metrics
from shared import openapi
from shared.fastpath import FastRoute, FastRoutes
from shared.problems import install_handlers
from shared.settings import Settings
from shared.version import VERSION

log = logging.getLogger(__name__)

# A readiness check returns None when ready, else the reason it is not.
ReadyCheck = Callable[[], Awaitable[str | None]]
TaskFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class Context:
    """What every service factory receives: settings, the shared Redis client, the registry."""

    settings: Settings
    redis: Redis
    registry: CollectorRegistry
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Service:
    name: str
    routers: list[APIRouter] = field(default_factory=list)
    tasks: list[TaskFactory] = field(default_factory=list)
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    ready: ReadyCheck | None = None
    state: dict[str, Any] = field(default_factory=dict)  # for tests and sibling wiring
    # Hot endpoints served as plain ASGI (shared/fastpath.py); also declared in `routers`.
    fast_routes: list[FastRoute] = field(default_factory=list)
    # Long-lived streaming paths (SSE): left out of the per-request HTTP duration histogram.
    streaming_paths: frozenset[str] = frozenset()


FatalHandler = Callable[[str, BaseException], None]


def _default_fatal(name: str, exc: BaseException) -> None:
    log.critical("background task %s died: %r", name, exc)


def build_app(
    ctx: Context,
    services: list[Service],
    *,
    on_fatal: FatalHandler = _default_fatal,
    close_redis: bool = True,
) -> FastAPI:
    names = ",".join(s.name for s in services)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for svc in services:
            for hook in svc.on_startup:
                await hook()
        running: list[asyncio.Task[None]] = []
        for svc in services:
            for factory in svc.tasks:
                task = asyncio.create_task(factory(), name=f"{svc.name}:{factory.__name__}")
                task.add_done_callback(_supervise(ctx, on_fatal))
                running.append(task)
        app.state.tasks = running
        try:
            yield
        finally:
            ctx.stopping.set()
            # Loops watch `stopping` and finish their current batch; then we cancel stragglers.
            if running:
                _, pending = await asyncio.wait(running, timeout=10)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            for svc in reversed(services):
                for hook in svc.on_shutdown:
                    with contextlib.suppress(Exception):
                        await hook()
            if close_redis:
                await ctx.redis.aclose()

    app = App(
        title="llmwatch",
        version=VERSION,
        description=f"llmwatch services: {names}",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.services = {s.name: s for s in services}
    install_handlers(app)
    openapi.install(app)  # errors as they really leave: problem+json, 401/503 everywhere
    http = shared_metrics.HttpMetrics(ctx.registry)
    fast = [route for svc in services for route in svc.fast_routes]
    streaming = frozenset[str]().union(*(s.streaming_paths for s in services))
    if fast and ctx.settings.cors_origins:  # inside CORS and the HTTP metrics middleware
        app.add_middleware(FastRoutes, routes=_fast_routes(services, fast))
    elif fast:  # in front of the whole app, measuring its own requests
        app.fast = FastRoutes(app.slow_path, _fast_routes(services, fast), http, streaming)
    if ctx.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=ctx.settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Signature-256"],
        )
    app.add_middleware(
        shared_metrics.HttpMetricsMiddleware,
        http=http,
        skip_paths=streaming,
    )
    app.include_router(_ops_router(ctx, services))
    for svc in services:
        for router in svc.routers:
            app.include_router(router)
    return app


def _fast_routes(
    services: list[Service], fast: list[FastRoute]
) -> dict[tuple[str, str], tuple[Any, object]]:
    """(method, path) -> (handler, its documented APIRoute, for the metrics' route label)."""
    documented: dict[tuple[str, str], object] = {}
    for svc in services:
        for router in svc.routers:
            for route in router.routes:
                for method in getattr(route, "methods", None) or ():
                    documented[(method, getattr(route, "path", ""))] = route
    return {(m, p): (handler, documented.get((m, p))) for m, p, handler in fast}


class App(FastAPI):
    """FastAPI, with an optional fast-route front (shared/fastpath.py) ahead of its stack."""

    fast: FastRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is not None:
            await self.fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def slow_path(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def _supervise(ctx: Context, on_fatal: FatalHandler) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        if task.cancelled() or ctx.stopping.is_set():
            return
        exc = task.exception() or RuntimeError("background task returned unexpectedly")
        on_fatal(task.get_name(), exc)

    return done


def _ops_router(ctx: Context, services: list[Service]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "services": [s.name for s in services]}

    @router.get("/readyz", summary="Redis reachable and every service ready")
    async def readyz() -> Response:
        checks: dict[str, str] = {}
        for svc in services:
            if svc.ready is None:
                checks[svc.name] = "ok"
                continue
            try:
                reason = await asyncio.wait_for(svc.ready(), timeout=2)
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                reason = f"check failed: {type(exc).__name__}"
            checks[svc.name] = reason or "ok"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
            headers=None if ok else {"Retry-After": "1"},
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = shared_metrics.render(ctx.registry)
        return Response(body, media_type=content_type)

    return router
