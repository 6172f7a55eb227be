"""Backpressure: which event-stream partitions hold more unconsumed entries than allowed.

A background task samples every partition once a second (one pipeline: XLEN + XINFO GROUPS);
requests only look at the last sample, so the check costs nothing per request. The backlog is
the aggregator group's `lag` (Redis 7+), else the stream length (an upper bound: the aggregator
trims what it acknowledged, so the length is what is unconsumed plus a small acknowledged tail).
With no consumer group yet, it is the stream length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis

from services.ingest.metrics import IngestMetrics
from shared.keys import AGGREGATOR_GROUP, events_stream

log = logging.getLogger(__name__)


def backlog_of(length: Any, groups: Any) -> int:
    """Unconsumed entries from XLEN and XINFO GROUPS replies (either may be an error)."""
    total = length if isinstance(length, int) else 0
    if isinstance(groups, list):
        for group in groups:
            name = group.get("name")
            if name in (AGGREGATOR_GROUP, AGGREGATOR_GROUP.encode()):
                lag = group.get("lag")
                return lag if isinstance(lag, int) else total
    return total


class BacklogMonitor:
    def __init__(
        self,
        redis: Redis,
        partitions: int,
        cap: int,
        *,
        interval_s: float = 1.0,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._streams = [events_stream(p) for p in range(partitions)]
        self._cap = cap
        self._interval_s = interval_s
        self._metrics = metrics
        self.over: frozenset[int] = frozenset()  # partitions over the cap at the last sample

    @property
    def enabled(self) -> bool:
        return self._cap > 0

    def blocks(self, partitions: set[int]) -> bool:
        return bool(self.over) and not self.over.isdisjoint(partitions)

    async def refresh(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        replies = await pipe.execute(raise_on_error=False)
        over = set()
        for partition in range(len(self._streams)):
            backlog = backlog_of(replies[2 * partition], replies[2 * partition + 1])
            if self._metrics is not None:
                self._metrics.backlog.labels(str(partition)).set(backlog)
            if backlog > self._cap:
                over.add(partition)
        if over != self.over:
            log.warning("event stream backlog over %d in partitions %s", self._cap, sorted(over))
        self.over = frozenset(over)

    async def run(self, stopping: asyncio.Event) -> None:
        if not self.enabled:
            await stopping.wait()
            return
        while not stopping.is_set():
            try:
                async with asyncio.timeout(max(self._interval_s, 1.0)):
                    await self.refresh()
            except Exception as exc:  # noqa: BLE001 - Redis down: publishing reports it; keep sampling
                log.debug("backlog sample failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await stopping.wait()
