"""The hub without Redis: synthetic XREAD replies, and lanes over an in-memory fake. Whatever
the reads return and however lanes interleave, a subscriber gets every entry after its
subscribe vector once, each stream in order, and every frame's id is the vector of what was
fanned out up to it; a full queue drops only its own subscriber; a failing lane makes the hub
unavailable without stopping the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from services.stream import hub as hub_module
from services.stream.feeds import Feed
from services.stream.hub import Hub
from services.stream.metrics import StreamMetrics
from services.stream.subscriber import Subscriber
from shared import cursor
from shared.cursor import NOTHING, StreamId
from shared.settings import Settings

pytestmark = pytest.mark.unit


def make_hub(redis: Any = None, partitions: int = 2, queue: int = 10_000, **kw: Any) -> Hub:
    s = Settings(partitions=partitions, sse_queue_frames=queue)
    h = Hub(redis, s, StreamMetrics.create(CollectorRegistry()), asyncio.Event(), **kw)
    h._epoch = "e"
    h._encoder = cursor.Encoder("e", partitions, [NOTHING] * len(h.streams))
    h.started.set()
    return h


def rows(ids: list[StreamId], name: bytes = b"e") -> list[Any]:
    return [(cursor.format_id(i).encode(), {b"t": name, b"d": b"{}"}) for i in ids]


def positions(h: Hub) -> dict[bytes, bytes]:
    return {s.encode(): b"0-0" for s in h.streams}


def received(sub: Subscriber) -> list[tuple[int, StreamId, cursor.Vector]]:
    return [(f.entry.stream, f.entry.id, cursor.decode(f.cursor).vector) for f in sub.frames or []]


backlogs = st.dictionaries(
    st.integers(0, 3),
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=12, unique=True
    ).map(sorted),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(backlogs, st.lists(st.integers(0, 3), max_size=20), st.integers(0, 30))
def test_every_entry_once_per_stream_in_order_with_the_running_vector(
    backlog: dict[int, list[StreamId]], lanes: list[int], join_at: int
) -> None:
    """Reads come as the lanes of a cluster would give them: one stream at a time, any order."""

    async def go() -> None:
        h = make_hub()
        early = Subscriber(Feed.STREAM, None, "ip", 10_000)
        late = Subscriber(Feed.STREAM, None, "ip", 10_000)
        h.subscribe(early)
        left = {j: list(ids) for j, ids in backlog.items()}
        order = [*lanes, *(j for j in sorted(left) for _ in left[j])]
        delivered = 0
        since: list[StreamId] = []
        for j in order:
            if not left.get(j):
                continue
            chunk, left[j] = left[j][:2], left[j][2:]
            for sid in chunk:
                if delivered == join_at:
                    since = h.subscribe(late)
                await h._deliver(h._absorb([(h.streams[j].encode(), rows([sid]))], positions(h)))
                delivered += 1
        got = received(early)
        assert sorted((j, sid) for j, sid, _ in got) == sorted(
            (j, sid) for j, ids in backlog.items() for sid in ids
        )
        running = [NOTHING] * len(h.streams)
        for j, sid, vector in got:
            assert sid > running[j]  # each stream in order, once
            running[j] = sid
            assert list(vector) == running  # the id says exactly what was seen
        if since:
            assert [(j, s) for j, s, _ in received(late)] == [
                (j, s) for j, s, _ in got if s > since[j]
            ]

    asyncio.run(go())


async def test_one_read_over_several_streams_is_merged_by_id() -> None:
    h = make_hub()
    sub = Subscriber(Feed.STREAM, None, "ip", 100)
    h.subscribe(sub)
    reply = [
        (h.streams[0].encode(), rows([(5, 0), (9, 0)])),
        (h.streams[1].encode(), rows([(7, 0)])),
    ]
    await h._deliver(h._absorb(reply, positions(h)))
    assert [(j, sid) for j, sid, _ in received(sub)] == [(0, (5, 0)), (1, (7, 0)), (0, (9, 0))]


async def test_a_full_queue_drops_only_that_subscriber() -> None:
    h = make_hub(queue=4)
    slow, fast = Subscriber(Feed.STREAM, None, "a", 3), Subscriber(Feed.STREAM, None, "b", 100)
    events = Subscriber(Feed.EVENTS, None, "c", 100)
    for sub in (slow, fast, events):
        h.subscribe(sub)
    await h._deliver(
        h._absorb([(h.streams[0].encode(), rows([(1, i) for i in range(5)]))], positions(h))
    )
    assert slow.dropped == "slow" and len(slow.frames or []) == 3
    assert fast.dropped is None and len(fast.frames or []) == 5
    assert events.frames is None  # `/api/events` carries only `event` entries
    assert h.subscribers == 2


async def test_filters_malformed_entries_and_unsubscribe() -> None:
    h = make_hub()
    runs = Subscriber(Feed.STREAM, frozenset({b"run.failed"}), "a", 100)
    h.subscribe(runs)
    reply = [(h.streams[0].encode(), [(b"1-0", {b"t": b"run.failed", b"d": b"{}"}),
                                      (b"1-1", {b"t": b"bad name", b"d": b"{}"}),
                                      (b"1-2", {b"t": b"event", b"d": b"{}"}),
                                      (b"1-3", {b"t": b"run.failed", b"d": b"{}"})])]  # fmt: skip
    await h._deliver(h._absorb(reply, positions(h)))
    assert [(sid, v[0]) for _, sid, v in received(runs)] == [((1, 0), (1, 0)), ((1, 3), (1, 3))]
    assert h.vector()[0] == (1, 3)  # past the entries nobody took, and the malformed one
    h.unsubscribe(runs)
    assert h.subscribers == 0 and h._by_name == {}


class FakeRedis:
    """XREAD and GET over in-memory streams; a stream in `broken` fails like a dead shard."""

    def __init__(self) -> None:
        self.streams: dict[bytes, list[tuple[bytes, dict[bytes, bytes]]]] = {}
        self.broken: set[bytes] = set()
        self.epoch = b"e"
        self.changed = asyncio.Condition()

    async def add(self, name: str, sid: StreamId) -> None:
        self.streams.setdefault(name.encode(), []).extend(rows([sid]))
        async with self.changed:
            self.changed.notify_all()

    async def xread(self, streams: dict[bytes, bytes], count: int, block: int) -> Any:
        if self.broken & set(streams):
            raise RedisConnectionError("shard down")
        reply = []
        for name, after in streams.items():
            new = [
                r
                for r in self.streams.get(name, [])
                if cursor.parse_id(r[0]) > cursor.parse_id(after)
            ]
            if new:
                reply.append((name, new[:count]))
        if reply:
            return reply
        async with self.changed:
            try:
                async with asyncio.timeout(block / 1000):
                    await self.changed.wait()
            except TimeoutError:
                pass
        return []

    async def get(self, key: str) -> bytes:
        return self.epoch


async def test_a_failing_lane_makes_the_hub_unavailable_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "BACKOFF_MIN_S", 0.01)
    monkeypatch.setattr(hub_module, "BACKOFF_MAX_S", 0.02)
    monkeypatch.setattr(hub_module, "EPOCH_CHECK_S", 0.01)
    fake = FakeRedis()
    h = make_hub(fake, partitions=2, per_stream=True)
    sub = Subscriber(Feed.STREAM, None, "ip", 100)
    h.subscribe(sub)
    lanes = [asyncio.create_task(h._lane(f"lane {j}", [j])) for j in range(len(h.streams))]
    watcher = asyncio.create_task(h._watch_epoch())
    try:
        fake.broken.add(h.streams[0].encode())
        await fake.add(h.streams[0], (1, 0))
        await fake.add(h.streams[1], (2, 0))
        while not sub.frames:
            await asyncio.sleep(0.005)
        assert [(j, sid) for j, sid, _ in received(sub)] == [(1, (2, 0))]
        assert h.available is False
        sub.take()
        fake.broken.clear()
        while h.available is False or not sub.frames:
            await asyncio.sleep(0.005)
        assert [(j, sid) for j, sid, _ in received(sub)] == [(0, (1, 0))]
        assert h.vector()[:2] == [(1, 0), (2, 0)]
        sub.take()
        fake.epoch = b"f"  # Redis was wiped: new cursors carry the new epoch
        while h.epoch != "f":
            await asyncio.sleep(0.005)
        await fake.add(h.streams[2], (3, 0))
        while not sub.frames:
            await asyncio.sleep(0.005)
        assert cursor.decode(sub.frames[0].cursor).epoch == "f"
    finally:
        h.stopping.set()
        await hub_module.cancel(*lanes, watcher)


async def test_a_waiting_writer_is_woken_by_a_push_a_drop_or_a_notice() -> None:
    h = make_hub()
    sub = Subscriber(Feed.STREAM, None, "ip", 10)
    h.subscribe(sub)
    for act in (
        lambda: h._set_available(False),
        lambda: asyncio.ensure_future(
            h._deliver(h._absorb([(h.streams[0].encode(), rows([(1, 0)]))], positions(h)))
        ),
        lambda: sub.drop("slow"),
    ):
        sub.waiter = asyncio.get_running_loop().create_future()
        waiter = sub.waiter
        act()
        await asyncio.wait_for(waiter, 1)
        assert sub.waiter is None


class Transport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


async def test_the_ticker_wakes_writers_due_a_ping_and_drops_clients_that_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "TICK_S", 0.01)
    h = make_hub()
    loop = asyncio.get_running_loop()
    due, later, left = (Subscriber(Feed.STREAM, None, "ip", 10) for _ in range(3))
    for sub in (due, later, left):
        sub.transport = Transport()
        sub.waiter = loop.create_future()
        h.subscribe(sub)
    due.next_ping = loop.time()
    later.next_ping = loop.time() + 3600
    waiting_later = later.waiter
    left.transport.closing = True
    ticker = asyncio.create_task(h._tick())
    try:
        await asyncio.wait_for(asyncio.gather(due.waiter, left.waiter), 1)
        assert left.dropped == "left" and due.dropped is None
        assert h.subscribers == 2
        assert not waiting_later.done()
    finally:
        h.stopping.set()
        await hub_module.cancel(ticker)
