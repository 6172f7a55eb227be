"""The aggregator's chores around the batch step: trimming the event streams, the lag/pending
gauges, and the idle and readiness checks. Every command here is single-key, so each works on
a cluster; a shard that is down fails only its own partitions' chores."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

from services.aggregator.metrics import AggregatorMetrics
from shared import keys
from shared.redis import UNAVAILABLE, Client

log = logging.getLogger(__name__)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_id(value: Any) -> tuple[int, int]:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


def our_group(groups: list[dict[Any, Any]]) -> dict[Any, Any] | None:
    return next((g for g in groups if text(g["name"]) == keys.AGGREGATOR_GROUP), None)


async def trim_events(
    redis: Client, metrics: AggregatorMetrics, partition: int, stream: str
) -> None:
    """XTRIM MINID below the oldest entry the group still needs; refresh the gauges."""
    try:
        group = our_group(await redis.xinfo_groups(stream))
    except ResponseError:
        return
    if group is None:
        return
    pending = int(group["pending"])
    keep_from = text(group["last-delivered-id"])
    if pending:
        summary = await redis.xpending(stream, keys.AGGREGATOR_GROUP)
        if summary["min"] is not None:  # None: acknowledged meanwhile by another replica
            keep_from = text(summary["min"])
    if keep_from != "0-0":
        await redis.xtrim(stream, minid=keep_from, approximate=True)
    lag = group.get("lag")
    if lag is None:
        # Redis < 7 has no `lag`. The stream was just trimmed to its oldest pending entry (in
        # whole nodes: approximate trimming), so what is neither pending nor unread is at most
        # one node of already-acknowledged entries (100 by default).
        lag = max(0, int(await redis.xlen(stream)) - pending)
    metrics.pending.labels(str(partition)).set(pending)
    metrics.lag.labels(str(partition)).set(int(lag or 0))


async def idle(redis: Client, streams: list[str]) -> bool:
    """Nothing unread, pending or waiting in an outbox, on any partition."""
    async with redis.pipeline(transaction=False) as pipe:
        for partition, stream in enumerate(streams):
            pipe.xinfo_groups(stream)
            pipe.xrevrange(stream, count=1)
            pipe.hlen(keys.outbox_key(partition))
        replies = await pipe.execute()
    for groups, newest, outbox in zip(replies[::3], replies[1::3], replies[2::3], strict=True):
        group = our_group(groups)
        if group is None or int(group["pending"]) or int(outbox):
            return False
        if newest and stream_id(newest[0][0]) > stream_id(group["last-delivered-id"]):
            return False  # arrived after the last read
    return True


async def ready(redis: Client, streams: list[str]) -> str | None:
    """None when Redis answers and the group exists on every partition, else why not."""
    try:
        for stream in streams:
            if our_group(await redis.xinfo_groups(stream)) is None:
                return f"consumer group missing on {stream}"
    except ResponseError as exc:
        return f"consumer group missing: {exc}"
    except UNAVAILABLE:
        return "redis unreachable"
    return None
