"""The fan-out hub: one reader per process over every feed stream, frames encoded once, pushed
to every matching subscriber's bounded queue without ever waiting on a client.

Reading. The hub follows every feed stream from its last entry at start-up. On a single Redis
one *lane* reads them all: a blocking XREAD over every stream, whose entries are merged by stream
id and fanned out as soon as they are read. A Redis Cluster refuses an XREAD over several slots,
so there every stream gets its own lane (its own blocking XREAD, on its shard); a lane's entries
are fanned out one at a time, each in one event-loop step, so lanes interleave freely. A lane
that fails retries with backoff while the others go on; `available` is False while any lane (or
the epoch check) fails, and every writer tells its client.

Ids. The hub's *vector* (`shared/cursor.py`) holds, per stream, the last entry it has fanned out.
Each entry moves it, and the entry's frames carry it as their SSE id, encoded once for every
subscriber. A subscriber added now gets every entry after `subscribe()`'s vector, so a resuming
client replays from Redis up to that vector, then takes the live frames.

A subscriber's queue holds `settings.sse_queue_frames` frames; when a push finds it full the
subscriber is marked dropped and removed (its socket is aborted). The hub never awaits a client.
A ticker task wakes idle writers for their pings and drops the clients whose socket closed or
whose write has been stuck past the send timeout, so a client needs no timer or task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from redis.exceptions import ResponseError

from services.stream import feeds
from services.stream.feeds import Entry, Feed
from services.stream.metrics import StreamMetrics
from services.stream.subscriber import Subscriber
from shared import cursor, keys
from shared.cursor import StreamId
from shared.redis import UNAVAILABLE, Client, per_slot_reads
from shared.settings import Settings

log = logging.getLogger(__name__)

READ_COUNT = 1000  # entries per stream per XREAD
BLOCK_MS = 1000  # idle wait of one XREAD
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
EPOCH_CHECK_S = 1.0  # the epoch is re-read this often, and at once when a lane reconnects
TICK_S = 1.0  # pings, departed clients and send timeouts are checked this often (at most)
MAX_SLICE = 256  # entries fanned out between two yields to the writers
EPOCH_LANE = "epoch"


async def ensure_epoch(redis: Client) -> str:
    """The keyspace epoch: created by the first gateway, kept until Redis is wiped."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.FEED_EPOCH, secrets.token_hex(4), nx=True)
        pipe.get(keys.FEED_EPOCH)
        _, value = await pipe.execute()
    return str(value.decode() if isinstance(value, bytes) else value)


async def cancel(*tasks: asyncio.Future[Any]) -> None:
    """Cancel and wait, cancelling again while a task runs on. On Python 3.11, redis-py sends
    every command through `asyncio.wait_for`, which swallows a cancellation that lands as the
    send completes (CPython gh-86296): the task would carry on (tests/e2e/test_faults_sse.py)."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.05)
    await asyncio.gather(*tasks, return_exceptions=True)  # all done: marks exceptions retrieved


class Hub:
    def __init__(
        self, redis: Client, settings: Settings, metrics: StreamMetrics, stopping: asyncio.Event,
        *, per_stream: bool | None = None, lanes: list[Client] | None = None,
    ) -> None:  # fmt: skip
        self.redis = redis  # start-up, epoch, replays
        self.lanes = lanes  # per feed stream, the client of its lane's blocking XREADs
        self.settings = settings
        self.metrics = metrics
        self.stopping = stopping
        self.partitions = settings.partitions
        self.streams = keys.feed_streams(settings.partitions)
        self.per_stream = per_slot_reads(redis) if per_stream is None else per_stream
        self._index = {name.encode(): i for i, name in enumerate(self.streams)}
        self._epoch = ""
        self._encoder: cursor.Encoder | None = None
        self.available = True  # False while a lane cannot reach Redis; writers tell clients
        self._failing: set[str] = set()
        self._recheck = asyncio.Event()
        self.started = asyncio.Event()
        self._all: set[Subscriber] = set()  # /api/stream without a filter
        self._by_name: dict[bytes, set[Subscriber]] = {}  # /api/stream with ?events=
        self._events: set[Subscriber] = set()  # /api/events

    # --- subscribers ---------------------------------------------------------------------------
    def vector(self) -> list[StreamId]:
        """Per stream, the last entry fanned out (a copy)."""
        if self._encoder is None:
            raise RuntimeError("hub not started")
        return list(self._encoder.vector)

    def subscribe(self, sub: Subscriber) -> list[StreamId]:
        """Start pushing live frames to `sub`; returns the vector they start after."""
        vector = self.vector()
        if self.stopping.is_set():
            sub.drop("shutdown")
        elif sub.feed is Feed.EVENTS:
            self._events.add(sub)
        elif sub.names is None:
            self._all.add(sub)
        else:
            for name in sub.names:
                self._by_name.setdefault(name, set()).add(sub)
        return vector

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
        return len(self._everyone())

    def _everyone(self) -> set[Subscriber]:
        return {*self._all, *self._events, *(s for g in self._by_name.values() for s in g)}

    @property
    def epoch(self) -> str:
        return self._epoch

    @epoch.setter
    def epoch(self, value: str) -> None:
        self._epoch = value
        if self._encoder is not None:
            self._encoder.set_epoch(value)

    def encoder(self, vector: list[StreamId]) -> cursor.Encoder:
        """A running cursor from `vector`, in this hub's epoch and layout (replays use one)."""
        return cursor.Encoder(self._epoch, self.partitions, vector)

    def cursor_text(self, vector: list[StreamId]) -> str:
        return cursor.encode(cursor.Cursor(self._epoch, self.partitions, tuple(vector)))

    def close(self) -> None:
        """Shutting down: every writer ends its response cleanly."""
        for sub in self._everyone():
            sub.drop("shutdown")
        self._all.clear()
        self._events.clear()
        self._by_name.clear()

    # --- the reader ----------------------------------------------------------------------------
    async def run(self) -> None:
        """The background task: start, then read with every lane until `stopping`."""
        try:
            if not await self._start():
                return
            count = len(self.streams)
            lanes = [[j] for j in range(count)] if self.per_stream else [list(range(count))]
            tasks = [
                asyncio.create_task(self._lane(f"lane {i}", idxs)) for i, idxs in enumerate(lanes)
            ]
            tasks.append(asyncio.create_task(self._watch_epoch()))
            tasks.append(asyncio.create_task(self._tick()))
            stop = asyncio.create_task(self.stopping.wait())
            try:
                done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel(*tasks, stop)
            for task in done:
                task.result()  # a lane that died: the service supervisor stops the process
        finally:
            self.close()

    async def _start(self) -> bool:
        """The epoch and every stream's last entry (where reading starts); retried until every
        shard has answered once."""
        backoff = BACKOFF_MIN_S
        while not self.stopping.is_set():
            try:
                epoch = await ensure_epoch(self.redis)
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name in self.streams:
                        pipe.xrevrange(name, count=1)
                    tops = await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - as a lane's read (_failed)
                self._failed("start", exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            vector = [cursor.parse_id(top[0][0]) if top else cursor.NOTHING for top in tops]
            self._epoch = epoch
            self._encoder = cursor.Encoder(epoch, self.partitions, vector)
            self._ok("start")
            self.started.set()
            lanes = len(self.streams) if self.per_stream else 1
            log.info("feed reader on %d streams, %d lane(s), epoch %s", len(vector), lanes, epoch)
            return True
        return False

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    async def _lane(self, lane: str, idxs: list[int]) -> None:
        """Blocking XREADs over `idxs`' streams, each batch fanned out as soon as it is read."""
        assert self._encoder is not None
        positions: dict[bytes, bytes] = {
            self.streams[j].encode(): cursor.format_id(self._encoder.vector[j]).encode()
            for j in idxs
        }
        client = self.lanes[idxs[0]] if self.lanes and len(idxs) == 1 else self.redis
        backoff = BACKOFF_MIN_S
        while not self.stopping.is_set():
            try:
                reply = await client.xread(positions, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - see _failed: any failed read is retried
                self._failed(lane, exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            self._ok(lane)
            if reply:
                await self._deliver(self._absorb(reply, positions))

    def _absorb(self, reply: Any, positions: dict[bytes, bytes]) -> list[Entry]:
        """XREAD's entries, merged by stream id; `positions` moves past them."""
        entries: list[Entry] = []
        for name, rows in reply:
            idx = self._index[name]
            for raw_id, fields in rows:
                entries.append(feeds.entry(idx, cursor.parse_id(raw_id), fields))
            if rows:
                positions[name] = rows[-1][0]
            self.metrics.reader_entries.inc(len(rows))
        if len(reply) > 1:
            entries.sort(key=_by_id)
        return entries

    async def _deliver(self, entries: list[Entry]) -> None:
        # Slices of half a queue, with a yield between them: every writer that can write drains
        # its queue in between, so a burst larger than a queue drops only the clients that
        # really stopped reading.
        step = max(1, min(MAX_SLICE, self.settings.sse_queue_frames // 2))
        for start in range(0, len(entries), step):
            if start:
                await asyncio.sleep(0)
            for item in entries[start : start + step]:
                self._fanout(item)

    def _fanout(self, item: Entry) -> None:
        encoder = self._encoder
        assert encoder is not None
        encoder.advance(item.stream, item.id)
        name = item.name
        if not name:
            log.warning("skipping malformed feed entry %s %s", self.streams[item.stream], item.id)
            return
        named = self._by_name.get(name)
        events = self._events if name == feeds.EVENT else None
        if not (self._all or named or events):
            return
        frame = feeds.frames(item, encoder.text())
        slow = [sub for sub in self._all if not sub.push(frame)]
        if named:
            slow += [sub for sub in named if not sub.push(frame)]
        if events:
            slow += [sub for sub in events if not sub.push(frame)]
        for sub in slow:
            self.unsubscribe(sub)
            sub.drop("slow")

    async def _tick(self) -> None:
        """One task for the process instead of timers and a listener task per client: wake the
        idle writers whose ping is due; drop those whose client has gone (socket closed) and
        those whose write has waited longer than the send timeout."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        while not self.stopping.is_set():
            await self._pause(min(TICK_S, settings.sse_ping_s / 2, settings.sse_send_timeout_s / 2))
            now = loop.time()
            for sub in self._everyone():
                if sub.gone():
                    self.unsubscribe(sub)
                    sub.drop("left")
                elif sub.sending and now - sub.sending > settings.sse_send_timeout_s:
                    self.unsubscribe(sub)
                    sub.drop("timeout")
                elif sub.next_ping <= now:
                    sub.wake()

    # --- health --------------------------------------------------------------------------------
    async def _watch_epoch(self) -> None:
        """Re-read the epoch every EPOCH_CHECK_S, and at once when a lane reconnects: a wiped
        Redis gets a new one, and cursors from before are then answered with `reset`."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EPOCH_CHECK_S):
                    await self._recheck.wait()
            self._recheck.clear()
            try:
                value = await self.redis.get(keys.FEED_EPOCH)
                current = value.decode() if value is not None else await ensure_epoch(self.redis)
            except Exception as exc:  # noqa: BLE001 - as a lane's read (_failed)
                self._failed(EPOCH_LANE, exc)
                continue
            self._ok(EPOCH_LANE)
            if current != self._epoch:
                log.warning("feed epoch changed %s -> %s (Redis was wiped?)", self._epoch, current)
                self.epoch = current

    def _failed(self, lane: str, exc: BaseException) -> None:
        """A read failed: count it, tell clients while Redis is unreachable. Errors other than
        Redis's own are retried too: while a cluster shard goes down, redis-py's cluster client
        tears down connections under other lanes' feet (e.g. an AttributeError on a writer it
        has just closed), and one lane's bad luck must not stop the process's every stream."""
        self.metrics.reader_errors.inc()
        known = isinstance(exc, (*UNAVAILABLE, ResponseError))
        log.warning("feed reader (%s): %r", lane, exc, exc_info=None if known else exc)
        if not isinstance(exc, ResponseError) and lane not in self._failing:
            self._failing.add(lane)
            self._set_available(False)

    def _ok(self, lane: str) -> None:
        if lane in self._failing:
            self._failing.discard(lane)
            if lane != EPOCH_LANE:
                self._recheck.set()  # back: is it still the same keyspace?
            if not self._failing:
                self._set_available(True)

    def _set_available(self, value: bool) -> None:
        if value is self.available:
            return
        self.available = value
        for sub in self._everyone():
            sub.wake()


def _by_id(entry: Entry) -> StreamId:
    return entry.id
