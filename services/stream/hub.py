"""The fan-out hub: one reader per process over every feed stream, frames encoded once, pushed
to every matching subscriber's bounded queue without ever waiting on a client.

The reader delivers entries in canonical order (`shared/cursor.py`), so an entry's SSE id is the
same on every replica. Each round: XREAD what is new (BLOCK only when idle), then one MULTI with
TIME, the epoch and a non-blocking XREAD; entries below `safe_bound` (the Redis clock has moved
past them and no truncated stream can still hold an earlier one) are sorted and fanned out, the
rest wait a millisecond for the next round. `delivered` is the watermark: every entry at or below
it has been handed to subscribers, every later one will be; a resuming client replays up to it
from Redis, then takes the live frames above it.

A subscriber's queue holds `settings.sse_queue_frames` frames; when a push finds it full the
subscriber is marked dropped and removed (its writer then closes the connection). The hub never
awaits a client.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.stream import feeds
from services.stream.feeds import Entry, Feed
from services.stream.metrics import StreamMetrics
from shared import cursor, keys
from shared.cursor import Position, StreamId
from shared.redis import UNAVAILABLE
from shared.settings import Settings

log = logging.getLogger(__name__)

READ_COUNT = 1000  # entries per stream per XREAD
BLOCK_MS = 1000  # idle wait; bounds how long shutdown waits for the reader
HOLD_S = 0.001  # entries newer than the Redis clock wait this long for the next round
BACKOFF_MAX_S = 2.0
MAX_SLICE = 256  # entries fanned out between two yields to the writers

Item = tuple[Position, bytes]


class Subscriber:
    """One SSE client as the hub sees it: what it wants and its bounded queue of frames."""

    __slots__ = ("capacity", "dropped", "feed", "frames", "ip", "names", "wake")

    def __init__(self, feed: Feed, names: frozenset[bytes] | None, ip: str, capacity: int) -> None:
        self.feed = feed
        self.names = names
        self.ip = ip
        self.capacity = capacity
        self.frames: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.dropped: str | None = None

    def push(self, item: Item) -> bool:
        if len(self.frames) >= self.capacity:
            return False
        self.frames.append(item)
        self.wake.set()
        return True

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = reason
        self.wake.set()


async def ensure_epoch(redis: Redis) -> str:
    """The keyspace epoch: created by the first gateway, kept until Redis is wiped."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.FEED_EPOCH, secrets.token_hex(4), nx=True)
        pipe.get(keys.FEED_EPOCH)
        _, value = await pipe.execute()
    return str(value.decode() if isinstance(value, bytes) else value)


class Hub:
    def __init__(
        self, redis: Redis, settings: Settings, metrics: StreamMetrics, stopping: asyncio.Event
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.metrics = metrics
        self.stopping = stopping
        self.partitions = settings.partitions
        self.streams = keys.feed_streams(settings.partitions)
        self._index = {name.encode(): i for i, name in enumerate(self.streams)}
        self._epoch = self._prefix = ""
        self.delivered: Position | None = None
        self.available = True  # False while the reader cannot reach Redis; writers tell clients
        self.started = asyncio.Event()
        self._read_from: list[StreamId] = []
        self._pending: list[Entry] = []
        self._busy = False
        self._all: set[Subscriber] = set()  # /api/stream without a filter
        self._by_name: dict[bytes, set[Subscriber]] = {}  # /api/stream with ?events=
        self._events: set[Subscriber] = set()  # /api/events

    # --- subscribers ---------------------------------------------------------------------------
    def subscribe(self, sub: Subscriber) -> Position:
        """Start pushing live frames to `sub`; returns the watermark they start after."""
        if self.delivered is None:
            raise RuntimeError("hub not started")
        if self.stopping.is_set():
            sub.drop("shutdown")
            return self.delivered
        if sub.feed is Feed.EVENTS:
            self._events.add(sub)
        elif sub.names is None:
            self._all.add(sub)
        else:
            for name in sub.names:
                self._by_name.setdefault(name, set()).add(sub)
        return self.delivered

    def unsubscribe(self, sub: Subscriber) -> None:
        self._events.discard(sub)
        self._all.discard(sub)
        for name in sub.names or ():
            group = self._by_name.get(name)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._by_name[name]

    @property
    def subscribers(self) -> int:
        named = {s for group in self._by_name.values() for s in group}
        return len(self._all) + len(self._events) + len(named)

    @property
    def epoch(self) -> str:
        return self._epoch

    @epoch.setter
    def epoch(self, value: str) -> None:
        self._epoch = value
        self._prefix = cursor.prefix(value, self.partitions) if value else ""

    def cursor_text(self, pos: Position) -> str:
        return cursor.encode_at(self._prefix, pos)

    # --- the reader ----------------------------------------------------------------------------
    async def run(self) -> None:
        """The background task: read rounds until `stopping`; Redis errors back off and retry."""
        backoff = 0.05
        while not self.stopping.is_set():
            try:
                if self.delivered is None:
                    await self._start()
                await self._round()
                backoff = 0.05
                self._set_available(True)
            except (*UNAVAILABLE, ResponseError) as exc:
                self.metrics.reader_errors.inc()
                if isinstance(exc, UNAVAILABLE):
                    self._set_available(False)
                log.warning("feed reader: %s; retrying in %.2fs", exc, backoff)
                try:
                    await asyncio.wait_for(self.stopping.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self.close()

    def _set_available(self, value: bool) -> None:
        if value is self.available:
            return
        self.available = value
        for sub in self._everyone():
            sub.wake.set()

    def _everyone(self) -> list[Subscriber]:
        return [*self._all, *self._events, *{s for g in self._by_name.values() for s in g}]

    def close(self) -> None:
        """Shutting down: every writer ends its response cleanly."""
        for sub in self._everyone():
            sub.drop("shutdown")
        self._all.clear()
        self._events.clear()
        self._by_name.clear()

    async def _start(self) -> None:
        self.epoch = await ensure_epoch(self.redis)
        now_ms = await self._server_ms()
        start = cursor.watermark(now_ms, len(self.streams))
        # Everything below the current millisecond is already in Redis, hence covered by the
        # watermark; reading resumes at this millisecond on every stream.
        self._read_from = [start.stream_id] * len(self.streams)
        self.delivered = start
        self.started.set()
        log.info("feed reader started on %d streams (epoch %s)", len(self.streams), self.epoch)

    async def _server_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _positions(self) -> dict[str, str]:
        return {
            s: cursor.format_id(sid) for s, sid in zip(self.streams, self._read_from, strict=True)
        }

    async def _round(self) -> None:
        if not self._pending and not self._busy:
            self._absorb(await self._wait_for_entries())
            if self.stopping.is_set():
                return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.get(keys.FEED_EPOCH)
            pipe.xread(self._positions(), count=READ_COUNT)
            (seconds, micros), epoch, reply = await pipe.execute()
        truncated = self._absorb(reply)
        self._busy = bool(reply)
        current = epoch.decode() if epoch is not None else await ensure_epoch(self.redis)
        if current != self.epoch:
            log.warning("feed epoch changed %s -> %s (Redis was wiped?)", self.epoch, current)
            self.epoch = current
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        bound = cursor.safe_bound(now_ms, len(self.streams), truncated)
        await self._deliver(bound)
        if self._pending:
            await asyncio.sleep(HOLD_S)

    async def _wait_for_entries(self) -> Any:
        """Idle: a blocking XREAD, abandoned at once when the process stops."""
        read = asyncio.ensure_future(
            self.redis.xread(self._positions(), count=READ_COUNT, block=BLOCK_MS)
        )
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not read.done():
                read.cancel()  # redis-py drops that connection instead of reusing it mid-reply
                await asyncio.gather(read, return_exceptions=True)
        return None if read.cancelled() else read.result()

    def _absorb(self, reply: Iterable[list[object]] | None) -> list[Position]:
        """Queue what XREAD returned; the positions of streams whose read hit COUNT."""
        truncated: list[Position] = []
        floor = self.delivered
        for name, rows in reply or ():
            idx = self._index[name]  # type: ignore[index]
            rows = list(rows)  # type: ignore[call-overload]
            for raw_id, fields in rows:
                self._read_from[idx] = cursor.parse_id(raw_id)
                item = feeds.entry(idx, raw_id, fields)
                if item is None:
                    log.warning("skipping malformed feed entry %s %s", self.streams[idx], raw_id)
                    continue
                if floor is not None and item.pos <= floor:
                    self.metrics.late_entries.inc()
                self._pending.append(item)
            self.metrics.reader_entries.inc(len(rows))
            if len(rows) >= READ_COUNT:
                last = self._read_from[idx]
                truncated.append(Position(last[0], last[1], idx))
        return truncated

    async def _deliver(self, bound: Position) -> None:
        assert self.delivered is not None
        limit = max(bound, self.delivered)
        ready = [e for e in self._pending if e.pos <= limit]
        if ready:
            self._pending = [e for e in self._pending if e.pos > limit]
            ready.sort(key=lambda e: e.pos)
            # Slices of half a queue, with a yield between them: every writer that can write
            # drains its queue in between, so a burst larger than a queue drops only the
            # clients that really stopped reading.
            step = max(1, min(MAX_SLICE, self.settings.sse_queue_frames // 2))
            for start in range(0, len(ready), step):
                if start:
                    await asyncio.sleep(0)
                for item in ready[start : start + step]:
                    self._fanout(item)
                    # the watermark moves with each entry, so a client subscribing during the
                    # yield starts exactly after what was already pushed
                    self.delivered = max(self.delivered, item.pos)
        self.delivered = limit

    def _fanout(self, item: Entry) -> None:
        wanted = (
            self._all or item.name in self._by_name or (item.name == feeds.EVENT and self._events)
        )
        if not wanted:
            return
        named, unnamed = feeds.frames(item, self.cursor_text(item.pos))
        slow: list[Subscriber] = []
        entry = (item.pos, named)
        for sub in self._all:
            if not sub.push(entry):
                slow.append(sub)
        for sub in self._by_name.get(item.name, ()):
            if not sub.push(entry):
                slow.append(sub)
        if unnamed is not None and self._events:
            plain = (item.pos, unnamed)
            for sub in self._events:
                if not sub.push(plain):
                    slow.append(sub)
        for sub in slow:
            self.unsubscribe(sub)
            sub.drop("slow")
