"""The aggregator worker: lanes that read and commit, the bell, and housekeeping.

    ensure the group on every partition (XGROUP CREATE MKSTREAM at 0)
    lanes (lane.py): one over every partition on a single Redis (one XREADGROUP for all), one
        per partition on a cluster (a multi-stream read must stay in one slot there, and a
        shard that is down must hold up only its own partitions)
    bell (bell.py): raises the notifications the commits left in the outboxes
    every few seconds, partition by partition: drain leftover outboxes, XTRIM MINID, prune
        expired runs from their indexes, refresh the lag and pending gauges

Replicas share partitions through the consumer group (one per partition stream): each entry is
delivered to one of them, and XAUTOCLAIM hands a dead replica's pending entries to the others.
`drain()` processes until nothing is left and returns (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import ResponseError

from services.aggregator import cost, housekeeping, store, tokens
from services.aggregator.batch import Entry
from services.aggregator.bell import Bell, drain_outbox
from services.aggregator.lane import Lane
from services.aggregator.metrics import AggregatorMetrics
from shared import keys, runtime
from shared.redis import UNAVAILABLE, Client, per_slot_reads
from shared.settings import Settings

log = logging.getLogger(__name__)

MAINTENANCE_EVERY_S = 5.0


def warm_up() -> None:
    """Load the price database and both BPE tables now, off the event loop, rather than inside
    the first batch that needs them (~0.5 s)."""
    cost.cost_usd("gpt-4o", 1, 1)
    for encoding in ("cl100k_base", "o200k_base"):
        tokens.count_text("warm up", encoding)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Consumer:
    def __init__(
        self,
        redis: Client,
        settings: Settings,
        metrics: AggregatorMetrics,
        stopping: asyncio.Event | None = None,
        name: str | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.metrics = metrics
        self.stopping = stopping or asyncio.Event()
        self.name = name or consumer_name()
        self.streams = [keys.events_stream(p) for p in range(settings.partitions)]
        self.bell = Bell(redis, settings)
        partitions = list(range(settings.partitions))
        groups = [[p] for p in partitions] if per_slot_reads(redis) else [partitions]
        self.lanes = [
            Lane(redis, settings, metrics, self.bell, self.name, group, self.stopping)
            for group in groups
        ]

    # --- running -------------------------------------------------------------------------
    async def run(self) -> None:
        await asyncio.to_thread(warm_up)
        runtime.freeze_long_lived()  # again: the tables warm_up just loaded
        helpers = [
            asyncio.create_task(self.bell.run(self.stopping)),
            asyncio.create_task(self._maintain()),
        ]
        try:
            await asyncio.gather(*(lane.run() for lane in self.lanes))
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(BaseException):
                    await task
        with contextlib.suppress(*UNAVAILABLE):
            await self.bell.ring()  # what the last commits queued; else the next pass raises it
        log.info("aggregator consumer %s stopped", self.name)

    async def drain(self, timeout: float = 30.0) -> None:
        """Process until no entry is unread, pending or in an outbox (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        await self.ensure_groups()
        while True:
            for lane in self.lanes:
                lane.next_claim = 0.0
            handled = sum(await asyncio.gather(*(lane.step(None) for lane in self.lanes)))
            await asyncio.gather(*(lane.settle() for lane in self.lanes))
            await self.bell.ring()
            if handled == 0:
                await self.maintenance()
                if await housekeeping.idle(self.redis, self.streams):
                    return
                await asyncio.sleep(0.02)
            if time.monotonic() > deadline:
                raise TimeoutError("aggregator drain did not finish")

    async def ensure_groups(self) -> None:
        for lane in self.lanes:
            await lane.ensure_groups()

    async def take(self) -> dict[int, list[Entry]]:
        """Read one batch on every lane without applying it: what a consumer that dies right
        after its read leaves behind (tests)."""
        await self.ensure_groups()
        out: dict[int, list[Entry]] = {}
        for lane in self.lanes:
            out.update(await lane.read(None))
        return out

    # --- housekeeping --------------------------------------------------------------------
    async def _maintain(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), MAINTENANCE_EVERY_S)
            if not self.stopping.is_set():
                await self.maintenance()

    async def maintenance(self) -> None:
        """Housekeeping, partition by partition; a failure is logged and retried next time,
        never fatal (a partition whose shard is down is skipped)."""
        for partition, stream in enumerate(self.streams):
            chores: list[Callable[[], Awaitable[None]]] = [
                lambda p=partition: drain_outbox(self.redis, self.settings, p),
                lambda p=partition, s=stream: housekeeping.trim_events(
                    self.redis, self.metrics, p, s
                ),
                lambda p=partition: store.prune_runs(self.redis, self.settings, p),
            ]
            for chore in chores:
                try:
                    await chore()
                except UNAVAILABLE as exc:
                    log.debug("aggregator: maintenance of partition %d skipped: %s", partition, exc)
                    break
                except ResponseError:
                    log.exception("aggregator: maintenance of partition %d failed", partition)

    async def ready(self) -> str | None:
        return await housekeeping.ready(self.redis, self.streams)
