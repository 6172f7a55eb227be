"""The ingest service: create_service(ctx) -> Service.

Routes: POST /api/open-wrapper, /api/report, /v1/runs/ingest; POST/GET /api/apps.
Background tasks: the publisher's flushers (group commit, one per Redis master), the backlog
sampler (backpressure), the registration of LLMWATCH_APPS ids. Ready when Redis answers PING.
"""

from __future__ import annotations

import asyncio

from services.ingest import apps
from services.ingest.backlog import BacklogMonitor
from services.ingest.deadline import Watchdog
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.ratelimit import RateLimiter
from services.ingest.routes import LLMONITOR_PATHS, WATCHER_PATH, Ingest, create_router
from shared.redis import connect
from shared.service import Context, Service


def create_service(ctx: Context) -> Service:
    settings = ctx.settings
    metrics = IngestMetrics(ctx.registry)
    timeout_s, retry_after = settings.publish_timeout_s, settings.retry_after_s
    watchdog = Watchdog()  # the one timer behind every request's body-read and publish deadline
    # The publisher has a client of its own. On a cluster, redis-py's cluster pipelines (used
    # elsewhere) recover from one failed node by closing every node's connections, and the
    # publisher's in-flight round trips to healthy shards must not be among them. And its
    # round trips carry their own deadline, so its connections need no per-send timer.
    own_client = connect(settings, socket_timeout=None)
    publisher = Publisher(
        own_client,
        timeout_s=timeout_s,
        retry_after_s=retry_after,
        metrics=metrics,
        replica_acks=settings.replica_acks,
        watchdog=watchdog,
    )
    registry = apps.AppRegistry(
        ctx.redis, settings.apps, timeout_s=timeout_s, retry_after_s=retry_after
    )
    limiter = RateLimiter(
        ctx.redis,
        per_ip=settings.rate_limit_per_ip,
        per_app=settings.rate_limit_per_app,
        timeout_s=timeout_s,
        retry_after_s=retry_after,
    )
    backlog = BacklogMonitor(
        ctx.redis, settings.partitions, settings.stream_max_backlog, metrics=metrics
    )
    ingest = Ingest(
        settings,
        publisher=publisher,
        registry=registry,
        limiter=limiter,
        backlog=backlog,
        metrics=metrics,
        watchdog=watchdog,
    )

    async def flusher() -> None:
        await publisher.run(ctx.stopping)

    async def backlog_sampler() -> None:
        await backlog.run(ctx.stopping)

    async def app_registration() -> None:
        await registry.register_configured(ctx.stopping)

    async def ready() -> str | None:
        try:
            async with asyncio.timeout(1.0):
                await ctx.redis.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return f"redis unreachable ({type(exc).__name__})"
        return None

    return Service(
        name="ingest",
        routers=[create_router(ingest), apps.create_router(ctx.redis, registry, settings)],
        # The write routes skip FastAPI's routing and dependency injection (the routers above
        # still document them): most of a request's cost otherwise.
        fast_routes=[
            ("POST", WATCHER_PATH, ingest.webhook),
            *(("POST", path, ingest.llmonitor) for path in LLMONITOR_PATHS),
        ],
        tasks=[flusher, backlog_sampler, app_registration],
        on_shutdown=[own_client.aclose],
        ready=ready,
        state={"ingest": ingest, "publisher": publisher, "registry": registry, "backlog": backlog},
    )
