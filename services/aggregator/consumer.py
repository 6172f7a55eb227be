"""The aggregator worker: one readable loop (arq-style).

    ensure the group on every partition (XGROUP CREATE MKSTREAM at 0)
    loop until `stopping`:
        every claim interval: XAUTOCLAIM entries idle > claim_idle_ms (dead consumers' work)
        XREADGROUP `>` a batch over all partitions (block consumer_block_ms)
        per partition, concurrently: prepare -> commit (WATCH/fold/MULTI, see store.py)
        entries that failed max_deliveries times -> dead-letter stream (acked there)
        ring the bell for the batch's notifications (idempotent), clear the outbox
        XACK what was applied or skipped as duplicate
        every few seconds: drain leftover outboxes, XTRIM MINID, prune, gauges

The batch step runs under `asyncio.shield`, so a shutdown finishes it instead of cutting it.
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
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.aggregator import cost, deadletter, housekeeping, store, tokens
from services.aggregator.deadletter import Letter
from services.aggregator.fold import prepare
from services.aggregator.metrics import AggregatorMetrics
from shared import keys
from shared.notifications import Occurrence
from shared.redis import UNAVAILABLE
from shared.settings import Settings

log = logging.getLogger(__name__)

Entry = tuple[str, bytes | None, int]  # stream id, stored bytes (None: trimmed), deliveries
MAINTENANCE_EVERY_S = 5.0
MAX_BACKOFF_S = 5.0


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
        redis: Redis,
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
        self.groups_ready = False
        self._next_claim = 0.0
        self._next_maintenance = 0.0
        self._prefetch: asyncio.Task[dict[int, list[Entry]]] | None = None

    # --- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        await asyncio.to_thread(warm_up)
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                if not self.groups_ready:
                    await self.ensure_groups()
                await self.step(block_ms=self.settings.consumer_block_ms)
                backoff = 0.1
            except UNAVAILABLE as exc:
                log.warning("aggregator: redis unavailable (%s), retrying in %.1fs", exc, backoff)
                await self._sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
        if self._prefetch is not None:  # already delivered to us: apply it rather than strand it
            try:
                await self.step(block_ms=None)
            except UNAVAILABLE:
                log.warning("aggregator: could not apply the last batch; it will be reclaimed")
        log.info("aggregator consumer %s stopped", self.name)

    async def drain(self, timeout: float = 30.0) -> None:
        """Process until no entry is unread, pending or in an outbox (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        await self.ensure_groups()
        while True:
            self._next_claim = 0.0
            handled = await self.step(block_ms=None)
            if handled == 0:
                await self.maintenance()
                if await housekeeping.idle(self.redis, self.streams):
                    return
                await asyncio.sleep(0.02)
            if time.monotonic() > deadline:
                raise TimeoutError("aggregator drain did not finish")

    async def step(self, block_ms: int | None) -> int:
        """One iteration: reclaim (when due), read, apply. Returns the entries handled."""
        now = time.monotonic()
        batch: dict[int, list[Entry]] = defaultdict(list)
        if now >= self._next_claim:
            self._next_claim = now + max(0.05, self.settings.claim_idle_ms / 2000)
            for partition, entries in (await self._reclaim()).items():
                batch[partition].extend(entries)
        if self._prefetch is not None:
            task, self._prefetch = self._prefetch, None
            read = await task
        else:
            read = await self._read(None if batch else block_ms)
        for partition, entries in read.items():
            batch[partition].extend(entries)
        if batch:
            if not self.stopping.is_set():
                # Read the next batch while this one is folded and committed (overlaps a round
                # trip with Python work); it is applied by the next step, or before stopping.
                self._prefetch = asyncio.create_task(self._read(None))
            try:
                await asyncio.shield(self._apply(dict(batch)))
            except BaseException:
                await self._drop_prefetch()  # its entries stay pending: reclaimed later
                raise
        if time.monotonic() >= self._next_maintenance:
            self._next_maintenance = time.monotonic() + MAINTENANCE_EVERY_S
            await self.maintenance()
        return sum(len(v) for v in batch.values())

    async def _drop_prefetch(self) -> None:
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass

    # --- groups, reading, reclaiming -----------------------------------------------------
    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, keys.AGGREGATOR_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self.groups_ready = True

    async def _read(self, block_ms: int | None) -> dict[int, list[Entry]]:
        try:
            reply = await self.redis.xreadgroup(
                keys.AGGREGATOR_GROUP,
                self.name,
                {s: ">" for s in self.streams},
                count=self.settings.consumer_batch,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream or group vanished (e.g. a flushed Redis)
                await self.ensure_groups()
                return {}
            raise
        out: dict[int, list[Entry]] = {}
        for stream, entries in reply or []:
            partition = self.streams.index(housekeeping.text(stream))
            out[partition] = [
                (housekeeping.text(i), (f or {}).get(keys.EVENT_FIELD), 1) for i, f in entries
            ]
        return out

    async def _reclaim(self) -> dict[int, list[Entry]]:
        """Take over entries idle longer than claim_idle_ms (their consumer died or failed)."""
        out: dict[int, list[Entry]] = {}
        for partition, stream in enumerate(self.streams):
            try:
                reply = await self.redis.xautoclaim(
                    stream,
                    keys.AGGREGATOR_GROUP,
                    self.name,
                    self.settings.claim_idle_ms,
                    start_id="0-0",
                    count=self.settings.consumer_batch,
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await self.ensure_groups()
                    continue
                raise
            claimed = [
                (housekeeping.text(i), (f or {}).get(keys.EVENT_FIELD)) for i, f in reply[1] if i
            ]
            if not claimed:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream_id, _ in claimed:
                    pipe.xpending_range(stream, keys.AGGREGATOR_GROUP, stream_id, stream_id, 1)
                counts = await pipe.execute()
            out[partition] = [
                (sid, raw, int(c[0]["times_delivered"]) if c else 1)
                for (sid, raw), c in zip(claimed, counts, strict=True)
            ]
            log.info("aggregator: reclaimed %d entries on partition %d", len(claimed), partition)
        return out

    # --- applying a batch ----------------------------------------------------------------
    async def _apply(self, batch: dict[int, list[Entry]]) -> None:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(self._apply_partition(p, entries) for p, entries in batch.items()),
            return_exceptions=True,
        )
        acks: dict[int, list[str]] = {}
        occurrences: dict[int, list[Occurrence]] = {}
        for partition, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, UNAVAILABLE):
                    raise result
                log.exception(
                    "aggregator: partition %d batch failed; it will be retried",
                    partition,
                    exc_info=result,
                )
                self.metrics.failed.labels("commit").inc(len(batch[partition]))
                continue
            acks[partition], occurrences[partition] = result
        rung = await housekeeping.ring(self.redis, self.settings, occurrences)
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for both
            housekeeping.clear_outbox(pipe, rung)
            for partition, ids in acks.items():
                if ids:
                    pipe.xack(keys.events_stream(partition), keys.AGGREGATOR_GROUP, *ids)
            await pipe.execute()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _apply_partition(
        self, partition: int, entries: list[Entry]
    ) -> tuple[list[str], list[Occurrence]]:
        limit = self.settings.max_deliveries
        letters: list[Letter] = []
        acks: list[str] = []
        fresh: list[tuple[str, bytes]] = []
        deliveries = {sid: n for sid, _, n in entries}
        for stream_id, raw, count in entries:
            if raw is None:
                acks.append(stream_id)  # trimmed while pending: nothing left to apply
            elif count > limit:
                letters.append(
                    Letter(stream_id, raw, f"delivered {count} times without success", count)
                )
            else:
                fresh.append((stream_id, raw))
        prepared = prepare(fresh)
        result = await store.commit(self.redis, self.settings, partition, prepared)
        writes = result.writes
        self.metrics.conflicts.inc(result.conflicts)
        self.metrics.duplicates.inc(writes.duplicates)
        for source, n in _sources(prepared.events, set(writes.markers)).items():
            self.metrics.processed.labels(source).inc(n)
        raws = dict(fresh)
        for stream_id, reason in writes.failed:
            self.metrics.failed.labels("event").inc()
            log.warning(
                "aggregator: partition %d entry %s failed: %s", partition, stream_id, reason
            )
            if deliveries[stream_id] >= limit:
                letters.append(
                    Letter(stream_id, raws.get(stream_id), reason, deliveries[stream_id])
                )
        occurrences = list(writes.occurrences)
        if letters:
            occurrences += await deadletter.move(
                self.redis, self.settings, partition, letters, self.name
            )
            self.metrics.deadlettered.inc(len(letters))
        if result.history_size > store.history_cap(self.settings) * 1.05:
            await store.trim_history(self.redis, self.settings, partition)
        return acks + writes.done, occurrences

    # --- housekeeping --------------------------------------------------------------------
    async def maintenance(self) -> None:
        """Housekeeping; a failure here is logged and retried next time, never fatal."""
        for partition, stream in enumerate(self.streams):
            for chore in (
                housekeeping.drain_outbox(self.redis, self.settings, partition),
                housekeeping.trim_events(self.redis, self.metrics, partition, stream),
                store.prune_runs(self.redis, self.settings, partition),
            ):
                try:
                    await chore
                except ResponseError:
                    log.exception("aggregator: maintenance of partition %d failed", partition)

    async def ready(self) -> str | None:
        return await housekeeping.ready(self.redis, self.streams)


def _sources(events: list[Any], applied: set[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if event.digest in applied:
            counts[event.source] += 1
    return counts
