"""Prometheus plumbing shared by every service: a per-app registry, HTTP metrics, exposition.

Each app owns a `CollectorRegistry` (not the global one), so `llmwatch up` exposes every service's
metrics on one `/metrics` while tests can build many apps in one process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    # A leak of per-connection tasks (SSE writers, listeners) shows here long before memory does;
    # the fault tests assert it returns to its level after thousands of connections.
    Gauge(
        "llmwatch_asyncio_tasks", "asyncio tasks alive in this process's event loop",
        registry=registry,
    ).set_function(_task_count)  # fmt: skip
    return registry


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # rendered outside the event loop (no running loop): unknown
        return float("nan")


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


class HttpMetrics:
    """The HTTP request duration histogram, with its label children cached (labels() locks)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "llmwatch_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, method: str, route: object, status: int, seconds: float) -> None:
        key = (method, getattr(route, "path", None) or "unmatched", status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.duration.labels(key[0], key[1], str(status))
        child.observe(seconds)


class HttpMetricsMiddleware:
    """Request duration by method, route template and status.

    Long-lived streams (`skip_paths`, the SSE feeds) pass straight through: their duration is
    the connection's life, which the stream gateway measures with its own gauges, and wrapping
    `send` would cost a Python call on every frame of every client.
    """

    def __init__(
        self, app: ASGIApp, http: HttpMetrics, skip_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.http = http
        self.skip_paths = skip_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.http.observe(
                scope["method"], scope.get("route"), status, time.perf_counter() - start
            )
