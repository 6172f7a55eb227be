"""The aggregator service: create_service(ctx) -> Service.

No HTTP routes of its own (the stream gateway serves the read APIs over this state); one
background task, the consumer loop, and a readiness check (Redis reachable, group present).
"""

from __future__ import annotations

from services.aggregator.consumer import Consumer
from services.aggregator.metrics import AggregatorMetrics
from shared.service import Context, Service


def create_service(ctx: Context) -> Service:
    consumer = Consumer(
        ctx.redis, ctx.settings, AggregatorMetrics.create(ctx.registry), ctx.stopping
    )

    async def consume() -> None:
        await consumer.run()

    return Service(
        name="aggregator",
        tasks=[consume],
        ready=consumer.ready,
        state={"consumer": consumer},
    )
