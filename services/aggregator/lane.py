"""A lane: the read-and-apply loop over some partitions (arq-style, one readable loop).

On a single Redis one lane follows every partition with one XREADGROUP over all the streams. On
a cluster, where a multi-stream read must stay in one slot, each partition gets its own lane: a
shard that is down then stops only its own partitions' lanes, which back off and resume when it
is back, while the others go on.

    loop until `stopping`:
        every claim interval: XAUTOCLAIM entries idle > claim_idle_ms (dead consumers' work)
        XREADGROUP `>` a batch (block consumer_block_ms); after a full one the next read is
            already in flight
        per partition: parse, then commit as a task (batch.apply) once the earlier commits
            touching the same runs have folded; at most two batches' worth in flight
        after an outage: wait for in-flight work, then re-read this consumer's own pending
        entries (XREADGROUP from 0) before new ones

Commits overlap: while one batch's script runs in Redis, the next batch is read and folded
here, on the run states the commits before it published (runcache.py), so two commits touching
a run do not conflict with each other; commits of other replicas are caught by the commit's own
compare-and-set. The writes of one partition's batches happen in the order they were read, so
its feed (and the live dashboard) shows events in the order /api/history lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from services.aggregator import batch as batches
from services.aggregator.batch import Batch, Entry
from services.aggregator.bell import Bell
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.runcache import Claim, RunCache
from shared import keys
from shared.redis import UNAVAILABLE, Client
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
Read = dict[int, list[Entry]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Lane:
    def __init__(
        self,
        redis: Client,
        settings: Settings,
        metrics: AggregatorMetrics,
        bell: Bell,
        name: str,
        partitions: list[int],
        stopping: asyncio.Event,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.metrics = metrics
        self.bell = bell
        self.name = name
        self.partitions = partitions
        self.stopping = stopping
        self.streams = {keys.events_stream(p): p for p in partitions}
        self.groups_ready = False
        self.next_claim = 0.0
        self._prefetch: asyncio.Task[Read] | None = None
        self._inflight: dict[asyncio.Task[None], int] = {}  # commit task -> entries
        self._runs = RunCache(4 * settings.consumer_batch, min(120.0, settings.run_retention_s / 2))
        self._last: dict[int, asyncio.Task[None]] = {}  # last commit submitted per partition
        self._recovering: dict[str, str] | None = None  # stream -> next own-pending id
        self._failure: BaseException | None = None

    # --- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                await self.step(self.settings.consumer_block_ms)
                backoff = 0.1
                continue
            except UNAVAILABLE as exc:
                log.warning(
                    "aggregator: partitions %s: redis unavailable (%s), retrying in %.1fs",
                    _span(self.partitions), exc, backoff,
                )  # fmt: skip
            except Exception:
                # Never let one lane take the others down: a bug, or the cluster client tripping
                # over its own reconnection while a shard rejoins (redis-py 8.1 closes every
                # connection on CLUSTERDOWN, under the feet of commands in flight).
                log.exception(
                    "aggregator: partitions %s: unexpected error, retrying in %.1fs",
                    _span(self.partitions), backoff,
                )  # fmt: skip
                self.metrics.failed.labels("lane").inc()
            await self.interrupted()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
        await self.settle()
        if self._prefetch is not None:  # already delivered to us: apply it rather than strand it
            try:
                await self.step(None)
                await self.settle()
            except Exception as exc:  # noqa: BLE001 - stopping anyway: left pending, reclaimed
                log.warning("aggregator: last batch not applied (%s); it will be reclaimed", exc)

    async def step(self, block_ms: int | None) -> int:
        """One iteration: reclaim (when due), read, hand the batch to commit tasks. Returns the
        entries handed over. Raises the error of a failed commit task, once."""
        self._raise_failure()
        if not self.groups_ready:
            await self.ensure_groups()
        if self._recovering is not None:
            read = await self._read_own()
        else:
            read = {}
            now = time.monotonic()
            if now >= self.next_claim:
                self.next_claim = now + max(0.05, self.settings.claim_idle_ms / 2000)
                read = await self._reclaim()
            if self._prefetch is not None:
                task, self._prefetch = self._prefetch, None
                more = await task
            else:
                more = await self._read(None if read else block_ms)
            for partition, entries in more.items():
                read.setdefault(partition, []).extend(entries)
            full = any(len(e) >= self.settings.consumer_batch for e in more.values())
            if full and not self.stopping.is_set():
                # More is waiting: the next read travels while this batch is parsed and
                # committed. (Else the next step's blocking read, issued as soon as this batch
                # is handed over, overlaps the commit as well, and costs no empty round trip.)
                self._prefetch = asyncio.create_task(self._read(None))
        handled = 0
        for partition, entries in read.items():
            handled += len(entries)
            await self._submit(batches.split(partition, entries, self.settings.max_deliveries))
        return handled

    async def settle(self) -> None:
        """Wait until every commit task handed out so far has finished."""
        while self._inflight:
            await asyncio.wait(list(self._inflight))

    async def interrupted(self) -> None:
        """After a Redis error: let in-flight work end, forget the prefetched read (its entries
        are pending for this consumer) and re-read this consumer's pending entries next."""
        await self.settle()
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._failure = None
        self._recovering = {s: "0" for s in self.streams}

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    # --- committing ------------------------------------------------------------------------
    async def _submit(self, batch: Batch) -> None:
        if not len(batch) and not batch.letters:
            return
        claim, earlier = self._runs.claim(batch.partition, batch.prepared.run_ids())
        previous = self._last.get(batch.partition)
        task = asyncio.create_task(self._commit(batch, claim, earlier, previous))
        self._last[batch.partition] = task
        self._inflight[task] = len(batch)
        task.add_done_callback(self._finished)
        # Bound the work in flight: about two read batches.
        while sum(self._inflight.values()) > 2 * self.settings.consumer_batch:
            await asyncio.wait(list(self._inflight), return_when=asyncio.FIRST_COMPLETED)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        for partition, last in list(self._last.items()):
            if last is task:
                del self._last[partition]

    async def _commit(
        self,
        batch: Batch,
        claim: Claim,
        earlier: list[Claim],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Never raises: an error is kept for the loop, which backs off, then re-reads this
        consumer's pending entries (their delivery counts grow: a batch that keeps failing
        is dead-lettered, entry by entry, after max_deliveries)."""
        try:
            for other in earlier:  # their folds, not their commits: see runcache.py
                await other.settled()
            if self._failure is not None:
                return  # an outage is being handled: the recovery re-reads these entries
            started = time.perf_counter()

            async def turn() -> None:
                if previous is not None and not previous.done():
                    await asyncio.wait({previous})  # never raises: _commit keeps its errors

            known = self._runs.known(batch.partition, batch.prepared.run_ids(), earlier)
            try:
                occurrences = await batches.apply(
                    self.redis,
                    self.settings,
                    self.metrics,
                    self.name,
                    batch,
                    turn,
                    known,
                    lambda states, sources: RunCache.publish(claim, states, sources),
                )
            except Exception as exc:
                if not isinstance(exc, UNAVAILABLE):
                    log.exception("aggregator: partition %d batch failed", batch.partition)
                    self.metrics.failed.labels("commit").inc(len(batch))
                self._failure = self._failure or exc
                return
            self.bell.put(batch.partition, occurrences)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        finally:
            claim.folded.set()  # also when it failed before folding: nothing to wait for
            claim.done.set()

    # --- groups, reading, reclaiming -----------------------------------------------------
    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, keys.AGGREGATOR_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self.groups_ready = True

    async def read(self, block_ms: int | None) -> Read:
        """One XREADGROUP of new entries over this lane's streams."""
        return await self._read(block_ms)

    async def _read(self, block_ms: int | None, ids: dict[str, str] | None = None) -> Read:
        try:
            reply = await self.redis.xreadgroup(
                keys.AGGREGATOR_GROUP,
                self.name,
                ids or {s: ">" for s in self.streams},
                count=self.settings.consumer_batch,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream or group vanished (e.g. a flushed Redis)
                await self.ensure_groups()
                return {}
            raise
        out: Read = {}
        for stream, entries in reply or []:
            partition = self.streams[_text(stream)]
            field = keys.EVENT_FIELD
            out[partition] = [(_text(i), f.get(field) if f else None, 1) for i, f in entries]
        return out

    async def _read_own(self) -> Read:
        """The next page of entries delivered to this consumer and not acknowledged, with their
        delivery counts."""
        assert self._recovering is not None
        read = await self._read(None, self._recovering)
        for stream in list(self._recovering):
            partition = self.streams[stream]
            entries = read.get(partition)
            if not entries:
                del self._recovering[stream]
                continue
            self._recovering[stream] = entries[-1][0]
            read[partition] = await self._counted(stream, entries)
        if not self._recovering:
            self._recovering = None
        if read:
            log.info(
                "aggregator: partitions %s: retrying %d entries of our own",
                _span(self.partitions), sum(len(v) for v in read.values()),
            )  # fmt: skip
        return read

    async def _counted(self, stream: str, entries: list[Entry]) -> list[Entry]:
        """The entries with their delivery counts (XPENDING)."""
        pending = await self.redis.xpending_range(
            stream,
            keys.AGGREGATOR_GROUP,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries),
            consumername=self.name,
        )
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [(sid, raw, counts.get(sid, 1)) for sid, raw, _ in entries]

    async def _reclaim(self) -> Read:
        """Take over entries idle longer than claim_idle_ms (their consumer died or failed)."""
        out: Read = {}
        for stream, partition in self.streams.items():
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
            claimed = [(_text(i), (f or {}).get(keys.EVENT_FIELD)) for i, f in reply[1] if i]
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


def _span(partitions: list[int]) -> str:
    return str(partitions[0]) if len(partitions) == 1 else f"{partitions[0]}-{partitions[-1]}"
