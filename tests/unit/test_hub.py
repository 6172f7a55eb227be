"""The hub's delivery order, driven with synthetic XREAD replies (no Redis): whatever COUNT cuts
off and however the entries spread over the streams, subscribers get every entry once, in
canonical order, and a full queue drops only its own subscriber."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.stream import hub as hub_module
from services.stream.feeds import Feed
from services.stream.hub import Hub, Subscriber
from services.stream.metrics import StreamMetrics
from shared import cursor
from shared.cursor import Position
from shared.settings import Settings

pytestmark = pytest.mark.unit


def make_hub(partitions: int = 2, queue: int = 10_000) -> Hub:
    s = Settings(partitions=partitions, sse_queue_frames=queue)
    h = Hub(None, s, StreamMetrics.create(CollectorRegistry()), asyncio.Event())  # type: ignore[arg-type]
    h.epoch = "e"
    h._read_from = [cursor.NOTHING] * len(h.streams)
    h.delivered = Position(0, 0, 0)
    return h


def xread(h: Hub, backlog: dict[int, list[tuple[int, int]]], count: int) -> list[Any]:
    """What XREAD COUNT returns from the hub's positions over an in-memory backlog."""
    reply = []
    for idx, ids in backlog.items():
        rows = [i for i in ids if i > h._read_from[idx]][:count]
        if rows:
            reply.append([h.streams[idx].encode(),
                          [(cursor.format_id(i).encode(), {b"t": b"e", b"d": b"{}"}) for i in rows]])  # fmt: skip
    return reply


async def drain(h: Hub, backlog: dict[int, list[tuple[int, int]]], count: int, now_ms: int) -> None:
    while True:
        truncated = h._absorb(xread(h, backlog, count))
        await h._deliver(cursor.safe_bound(now_ms, len(h.streams), truncated))
        if not truncated and not h._pending:
            return


backlogs = st.dictionaries(
    st.integers(0, 3),
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=12, unique=True
    ).map(sorted),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(backlogs, st.integers(1, 4))
def test_every_entry_once_in_canonical_order(
    backlog: dict[int, list[tuple[int, int]]], count: int
) -> None:
    async def go() -> None:
        h = make_hub()
        sub = Subscriber(Feed.STREAM, None, "ip", 10_000)
        h.subscribe(sub)
        old = hub_module.READ_COUNT
        hub_module.READ_COUNT = count
        try:
            await drain(h, backlog, count, now_ms=1000)
        finally:
            hub_module.READ_COUNT = old
        got = [pos for pos, _ in sub.frames]
        expected = sorted(Position(ms, seq, idx) for idx, ids in backlog.items() for ms, seq in ids)
        assert got == expected
        assert h.delivered == cursor.watermark(1000, len(h.streams))

    asyncio.run(go())


async def test_entries_of_the_current_millisecond_wait() -> None:
    h = make_hub()
    sub = Subscriber(Feed.STREAM, None, "ip", 100)
    h.subscribe(sub)
    h._absorb(xread(h, {0: [(5, 0)], 1: [(4, 0)]}, 10))
    await h._deliver(cursor.safe_bound(5, 4, []))  # the clock is still in ms 5
    assert [pos for pos, _ in sub.frames] == [Position(4, 0, 1)]
    await h._deliver(cursor.safe_bound(6, 4, []))
    assert [pos for pos, _ in sub.frames] == [Position(4, 0, 1), Position(5, 0, 0)]


async def test_a_full_queue_drops_only_that_subscriber() -> None:
    h = make_hub(queue=4)
    slow, fast = Subscriber(Feed.STREAM, None, "a", 3), Subscriber(Feed.STREAM, None, "b", 100)
    events = Subscriber(Feed.EVENTS, None, "c", 100)
    h.subscribe(slow)
    h.subscribe(fast)
    h.subscribe(events)
    h._absorb(xread(h, {0: [(1, i) for i in range(5)]}, 10))
    await h._deliver(cursor.safe_bound(10, 4, []))
    assert slow.dropped == "slow" and len(slow.frames) == 3
    assert fast.dropped is None and len(fast.frames) == 5
    assert len(events.frames) == 0  # `/api/events` carries only `event` entries
    assert h.subscribers == 2


async def test_filters_and_unsubscribe() -> None:
    h = make_hub()
    runs = Subscriber(Feed.STREAM, frozenset({b"run.failed"}), "a", 100)
    h.subscribe(runs)
    h._absorb([[h.streams[0].encode(), [(b"1-0", {b"t": b"run.failed", b"d": b"{}"}),
                                        (b"1-1", {b"t": b"event", b"d": b"{}"})]]])  # fmt: skip
    await h._deliver(cursor.safe_bound(10, 4, []))
    assert [pos for pos, _ in runs.frames] == [Position(1, 0, 0)]
    h.unsubscribe(runs)
    assert h.subscribers == 0 and h._by_name == {}
