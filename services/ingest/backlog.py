"""Backpressure: which event-stream partitions hold more unconsumed entries than allowed.

A background task samples every partition once a second (XLEN + XINFO GROUPS: one pipeline on a
single Redis, one pair of commands per partition on a cluster); requests only look at the last
sample, so the check costs nothing per request. The backlog is
the aggregator group's `lag` (Redis 7+), else the stream length (an upper bound: the aggregator
trims what it acknowledged, so the length is what is unconsumed plus a small acknowledged tail).
With no consumer group yet, it is the stream length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from services.ingest.metrics import IngestMetrics
from shared.keys import AGGREGATOR_GROUP, events_stream
from shared.redis import Client, per_slot_reads

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
        redis: Client,
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
        """Sample every partition. On a cluster each partition is asked on its own (a shard
        that does not answer keeps its last sample; the others are still sampled); on a single
        Redis, all in one pipeline."""
        if per_slot_reads(self._redis):
            replies = await asyncio.gather(
                *(self._sample(stream) for stream in self._streams), return_exceptions=True
            )
        else:
            pipe = self._redis.pipeline(transaction=False)
            for stream in self._streams:
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
            flat = await pipe.execute(raise_on_error=False)
            replies = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(self._streams))]
        over = set(self.over)
        for partition, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                continue
            backlog = backlog_of(*reply)
            if self._metrics is not None:
                self._metrics.backlog.labels(str(partition)).set(backlog)
            if backlog > self._cap:
                over.add(partition)
            else:
                over.discard(partition)
        if over != self.over:
            log.warning("event stream backlog over %d in partitions %s", self._cap, sorted(over))
        self.over = frozenset(over)

    async def _sample(self, stream: str) -> tuple[Any, Any]:
        length, groups = await asyncio.gather(
            self._redis.xlen(stream), self._redis.xinfo_groups(stream), return_exceptions=True
        )
        if isinstance(length, BaseException) and isinstance(groups, BaseException):
            raise length  # the shard did not answer: keep this partition's last sample
        return length, groups

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
