"""Targets: the one module that knows every service (Loki's module manager, in small).

`all` is what `llmwatch up` runs; any single name is what `llmwatch serve <name>` runs. The same
factories build both, so the monolith and the microservices cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from redis.asyncio import Redis

from services.aggregator.app import create_service as aggregator
from services.ingest.app import create_service as ingest
from services.metrics.app import create_service as metrics
from services.stream.app import create_service as stream
from shared import metrics as shared_metrics
from shared.redis import connect
from shared.service import Context, FatalHandler, Service, build_app
from shared.settings import Settings

FACTORIES: dict[str, Callable[[Context], Service]] = {
    "ingest": ingest,
    "aggregator": aggregator,
    "stream": stream,
    "metrics": metrics,
}
ALL = "all"
DESCRIPTIONS = {
    "ingest": "HTTP write side: validates both event formats and publishes them to Redis Streams",
    "aggregator": "consumer group: stats, history, runs, tokens, cost, notifications (exactly once)",
    "stream": "read side: SSE feeds, read APIs and the dashboard",
    "metrics": "psutil sampler: system samples, resource-pressure notifications, config.stale",
    ALL: "every service above in one process (what `llmwatch up` runs)",
}


def resolve(target: str) -> list[str]:
    if target == ALL:
        return list(FACTORIES)
    if target not in FACTORIES:
        raise ValueError(f"unknown target {target!r}; one of: {', '.join([*FACTORIES, ALL])}")
    return [target]


def create_app(
    settings: Settings,
    target: str = ALL,
    *,
    redis: Redis | None = None,
    on_fatal: FatalHandler | None = None,
) -> FastAPI:
    """The ASGI app for a target. Builds the Redis client unless one is given (tests)."""
    names = resolve(target)
    client = redis if redis is not None else connect(settings)
    ctx = Context(settings=settings, redis=client, registry=shared_metrics.new_registry())
    services = [FACTORIES[name](ctx) for name in names]
    kwargs = {"on_fatal": on_fatal} if on_fatal else {}
    return build_app(ctx, services, close_redis=redis is None, **kwargs)
