"""The stream gateway: live SSE feeds, system snapshots, the read APIs and the dashboard.

One feed reader per process (`Hub.run`, a background task) serves every SSE client of the
process; `/readyz` reports ready once it has connected and Redis answers. On a Redis Cluster each
of its lanes (one blocked XREAD per feed stream) gets a cluster client of its own: they never
take the connections the read APIs and replays need, and a shard that fails cuts only the lanes
on it (redis-py 8.1's cluster client closes every connection it has when one node fails, which
on a shared client would cut every lane's blocking read, again at each retry of the dead one).
"""

from __future__ import annotations

from services.stream import dashboard, reads, routes, system
from services.stream.hub import Hub
from services.stream.limits import StreamLimits
from services.stream.metrics import StreamMetrics
from shared import keys
from shared.redis import Client, connect, per_slot_reads, ping
from shared.service import Context, Service


def create_service(ctx: Context) -> Service:
    metrics = StreamMetrics.create(ctx.registry)
    lanes: list[Client] = []
    if per_slot_reads(ctx.redis) and ctx.settings.redis_url:
        lanes = [
            connect(ctx.settings, max_connections=4)  # one blocked read, and a reconnect
            for _ in keys.feed_streams(ctx.settings.partitions)
        ]
    hub = Hub(ctx.redis, ctx.settings, metrics, ctx.stopping, lanes=lanes or None)
    gateway = routes.Gateway(ctx.settings, hub, StreamLimits(), metrics)

    async def feed_reader() -> None:
        await hub.run()

    async def close_lanes() -> None:
        for client in lanes:
            await client.aclose()

    async def ready() -> str | None:
        if not await ping(ctx.redis):
            return "redis unreachable"
        if not hub.started.is_set():
            return "feed reader not started"
        return None

    return Service(
        name="stream",
        routers=[
            routes.create_router(gateway),
            system.create_router(ctx),
            reads.create_router(ctx),
            dashboard.create_router(ctx),
        ],
        # The feeds are plain ASGI (the routers above document them): a FastAPI request's
        # frames would stay in memory for as long as each stream is open.
        fast_routes=[
            ("GET", routes.EVENTS_PATH, gateway.events),
            ("GET", routes.STREAM_PATH, gateway.stream),
        ],
        tasks=[feed_reader],
        on_shutdown=[close_lanes],
        streaming_paths=routes.FEED_PATHS,
        ready=ready,
        state={"hub": hub, "gateway": gateway, "metrics": metrics},
    )
