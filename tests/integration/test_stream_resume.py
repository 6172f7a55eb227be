"""Resuming the live feeds (`Last-Event-ID`, `?lastEventId=`) over real HTTP and a real Redis,
on a single server and on a 3-master cluster: across gateway restarts and replicas, with a
replica behind the client, paged replays, retention, unusable cursors and snapshots. Always
without a gap or a repeat, each stream (hence each run) in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from services.stream.feeds import Entry
from shared import cursor, history, keys
from shared.settings import Settings
from tests.integration.sse_support import (
    Received,
    add,
    assert_ids_move_forward,
    assert_nothing_more,
    feed,
    hub_of,
    serve,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

P0, P1 = keys.feed_stream(0), keys.feed_stream(1)


class Writer:
    """Feed entries `{"s": stream, "n": k}`, counted per stream, so what a client got can be
    checked for gaps, repeats and per-stream order."""

    def __init__(self, redis: Redis, partitions: int) -> None:
        self.redis = redis
        self.streams = keys.feed_streams(partitions)
        self.sent: list[tuple[int, int]] = []
        self.count = Counter[int]()

    async def publish(self, n: int, stride: int = 1) -> None:
        for i in range(n):
            s = (len(self.sent) * stride + i) % len(self.streams)
            item = (s, self.count[s])
            self.count[s] += 1
            self.sent.append(item)
            await add(self.redis, self.streams[s], "event", {"s": item[0], "n": item[1]})


def items(got: list[Received]) -> list[tuple[int, int]]:
    return [(d["s"], d["n"]) for d in (orjson.loads(r.data) for r in got)]


def assert_each_stream_in_order(got: list[Received]) -> None:
    last: dict[int, int] = {}
    for s, n in items(got):
        assert n > last.get(s, -1), (s, n, last)
        last[s] = n


async def test_resume_across_a_gateway_restart_loses_nothing_and_repeats_nothing(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(partitions=2)
    w = Writer(redis, 2)
    async with (
        serve(settings) as (base, _),
        httpx.AsyncClient(base_url=base) as client,
        feed(client, "/api/stream") as stream,
    ):
        await stream.next(pings=True)
        await w.publish(10)
        first = await stream.take(6)
    await w.publish(10)  # while no gateway runs
    async with serve(settings) as (base, _app), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream", headers={"Last-Event-ID": first[-1].id}) as stream:
            await stream.next(pings=True)
            await w.publish(10)  # live, racing the replay hand-over
            rest = await stream.take(24)
            await assert_nothing_more(stream, redis)
        # ?lastEventId= works the same (EventSource cannot set headers on a first connect)
        async with feed(client, f"/api/stream?lastEventId={first[2].id}") as again:
            await again.next(pings=True)
            tail = await again.take(27)
            assert orjson.loads((await again.next()).data) == {"sentinel": 0}  # the one above
            await assert_nothing_more(again, redis, 1)
    got = first + rest
    assert sorted(items(got)) == sorted(w.sent)  # every entry, once
    assert_each_stream_in_order(got)
    assert_ids_move_forward(got)
    assert sorted(items(tail)) == sorted(items(got[3:]))
    assert_each_stream_in_order(tail)
    assert_ids_move_forward(tail, start=first[2].id)


async def test_a_client_resumes_on_another_replica_without_gap_or_repeat(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    """Two replicas may interleave the streams differently (so their ids differ), but a cursor
    of one resumes on the other with exactly what the client has not seen."""
    settings = make_settings(partitions=3)
    streams = keys.feed_streams(3)

    async def writer(w: int) -> None:
        for i in range(40):
            await add(redis, streams[(w + i) % len(streams)], "event", {"w": w, "i": i})

    def per_stream(got: list[Received]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for r in got:
            d = orjson.loads(r.data)
            out.setdefault((d["w"] + d["i"]) % len(streams), []).append(r.data)
        return out

    async with (
        serve(settings) as (base_a, _),
        serve(settings) as (base_b, _),
        httpx.AsyncClient(base_url=base_a) as ca,
        httpx.AsyncClient(base_url=base_b) as cb,
    ):
        async with feed(ca, "/api/stream") as fa, feed(cb, "/api/stream") as fb:
            await fa.next(pings=True)
            await fb.next(pings=True)
            await asyncio.gather(*(writer(w) for w in range(5)))
            got_a, got_b = await fa.take(200), await fb.take(200)
        for got in (got_a, got_b):
            assert len({r.data for r in got}) == 200
            assert_ids_move_forward(got)
        assert per_stream(got_a) == per_stream(got_b)  # each stream in the one order Redis has
        for mark, (cut, got, other) in enumerate(((99, got_a, cb), (49, got_b, ca))):
            async with feed(other, "/api/stream", headers={"Last-Event-ID": got[cut].id}) as f:
                rest = await f.take(len(got) - cut - 1 + mark)  # + the sentinels written below
                await assert_nothing_more(f, redis, mark)
            assert [r.data for r in rest if "sentinel" in r.data] == [
                orjson.dumps({"sentinel": m}).decode() for m in range(mark)
            ]
            assert_ids_move_forward(rest, start=got[cut].id)
            rest = [r for r in rest if "sentinel" not in r.data]
            assert sorted(r.data for r in rest) == sorted(r.data for r in got[cut + 1 :])
            assert per_stream(rest) == per_stream(got[cut + 1 :])


async def test_a_client_ahead_of_the_replica_it_resumes_on_gets_no_repeat(
    make_settings: Callable[..., Settings], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica B has read the entries but not yet fanned them out when a client that saw them
    on replica A resumes there: B skips what the client has, and no id goes backwards."""
    settings = make_settings(partitions=2)
    w = Writer(redis, 2)
    async with (
        serve(settings) as (base_a, _),
        serve(settings) as (base_b, app_b),
        httpx.AsyncClient(base_url=base_a) as ca,
        httpx.AsyncClient(base_url=base_b) as cb,
    ):
        hub_b = hub_of(app_b)
        await asyncio.wait_for(hub_b.started.wait(), 10)
        gate = asyncio.Event()
        deliver = hub_b._deliver

        async def held(entries: list[Entry]) -> None:
            await gate.wait()
            await deliver(entries)

        monkeypatch.setattr(hub_b, "_deliver", held)
        async with feed(ca, "/api/stream") as fa:
            await fa.next(pings=True)
            await w.publish(6)
            seen = await fa.take(6)
        async with feed(cb, "/api/stream", headers={"Last-Event-ID": seen[-1].id}) as fb:
            await fb.next(pings=True)
            await until(lambda: hub_b.subscribers == 1)
            assert cursor.ahead(cursor.decode(seen[-1].id).vector, hub_b.vector())
            await w.publish(4)
            gate.set()
            rest = await fb.take(4)
            await assert_nothing_more(fb, redis)
    assert sorted(items(rest)) == sorted(w.sent[6:])
    assert_each_stream_in_order(seen + rest)
    assert_ids_move_forward(rest, start=seen[-1].id)


async def test_paged_replays_and_truncated_reads_keep_each_streams_order(
    make_settings: Callable[..., Settings], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads cut by COUNT and replays cut into pages: each stream stays in order, and a replay
    comes merged by entry id. Explicit ids a little in the future make the layout exact: ten
    entries in one millisecond on P0, then one a millisecond later on P1 and on notifications."""
    monkeypatch.setattr("services.stream.hub.READ_COUNT", 3)
    monkeypatch.setattr("services.stream.replay.PAGE", 4)
    settings = make_settings(partitions=2)
    seconds, micros = await redis.time()
    future = seconds * 1000 + micros // 1000 + 300
    layout = [(future, seq, 0) for seq in range(10)] + [(future + 1, 0, 1), (future + 1, 0, 2)]
    streams = keys.feed_streams(2)
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream") as stream:
            await stream.next(pings=True)
            async with redis.pipeline(transaction=False) as pipe:
                for ms, seq, s in layout:
                    fields = {b"t": b"run.updated", b"d": orjson.dumps({"at": [ms, seq, s]})}
                    pipe.xadd(streams[s], fields, id=f"{ms}-{seq}")  # type: ignore[arg-type]
                await pipe.execute()
            live = await stream.take(12)
        assert sorted(tuple(orjson.loads(r.data)["at"]) for r in live) == layout
        assert [orjson.loads(r.data)["at"] for r in live if orjson.loads(r.data)["at"][2] == 0] == [
            [future, seq, 0] for seq in range(10)
        ]
        assert_ids_move_forward(live)
        async with feed(client, "/api/stream", headers={"Last-Event-ID": live[0].id}) as stream:
            resumed = await stream.take(11)
    first = tuple(orjson.loads(live[0].data)["at"])
    assert [tuple(orjson.loads(r.data)["at"]) for r in resumed] == [x for x in layout if x != first]
    assert_ids_move_forward(resumed, start=live[0].id)


async def test_every_partition_reaches_one_stream_and_runs_keep_their_order_across_a_restart(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    """Six partitions (two per master on the cluster): one SSE stream carries all of them, a
    resume across a gateway restart is gap- and repeat-free, and every run stays in order."""
    settings = make_settings(partitions=6)
    runs = [f"run-{i}" for i in range(24)]
    assert {keys.partition_for(r, 6) for r in runs} == set(range(6))
    sent = Counter[str]()

    async def publish(rounds: int) -> None:
        async def one(run: str) -> None:
            for _ in range(rounds):
                payload = {"run": run, "n": sent[run]}
                sent[run] += 1
                await add(redis, keys.feed_stream(keys.partition_for(run, 6)), "event", payload)

        await asyncio.gather(*(one(r) for r in runs))

    async with (
        serve(settings) as (base, _),
        httpx.AsyncClient(base_url=base) as client,
        feed(client, "/api/stream") as stream,
    ):
        await stream.next(pings=True)
        await publish(3)
        first = await stream.take(40)
    await publish(3)
    async with (
        serve(settings) as (base, _),
        httpx.AsyncClient(base_url=base) as client,
        feed(client, "/api/stream", headers={"Last-Event-ID": first[-1].id}) as stream,
    ):
        await stream.next(pings=True)
        await publish(3)
        rest = await stream.take(24 * 9 - 40)
        await assert_nothing_more(stream, redis)
    got = [orjson.loads(r.data) for r in first + rest]
    assert sorted((d["run"], d["n"]) for d in got) == sorted(
        (run, n) for run in runs for n in range(9)
    )
    for run in runs:
        assert [d["n"] for d in got if d["run"] == run] == list(range(9))
    assert_ids_move_forward(first + rest)


async def test_a_cursor_older_than_retention_gets_reset(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(feed_max=100)
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream") as stream:
            await stream.next(pings=True)
            await add(redis, P0, "run.created", {"n": 0})
            old = (await stream.next()).id
        for n in range(1, 301):  # the aggregator trims its feed: entries after `old` are gone
            await add(redis, P0, "run.created", {"n": n}, maxlen=100, approximate=False)
        async with feed(client, "/api/stream", headers={"Last-Event-ID": old}) as stream:
            assert (await stream.next(pings=True)).event == "ping"
            reset = await stream.next()
            assert reset.event == "reset"
            assert orjson.loads(reset.data)["reason"] == "expired"
            cursor.decode(reset.id)  # a fresh cursor to resume from
            await add(redis, P0, "run.created", {"n": 301})
            # live from the reset point on (the reader may not have passed the trimmed burst)
            seen = [orjson.loads((await stream.next()).data)["n"]]
            while seen[-1] != 301:
                seen.append(orjson.loads((await stream.next()).data)["n"])
            assert seen == sorted(set(seen))
        # still within retention: a plain replay, no reset
        async with feed(client, "/api/stream") as stream:
            await stream.next(pings=True)
            await add(redis, P0, "run.created", {"n": 302})
            recent = (await stream.next()).id
        await add(redis, P0, "run.created", {"n": 303}, maxlen=100, approximate=False)
        async with feed(client, "/api/stream", headers={"Last-Event-ID": recent}) as stream:
            assert orjson.loads((await stream.next()).data) == {"n": 303}


def _other_epoch(good: cursor.Cursor) -> str:
    return cursor.encode(cursor.Cursor("zz", good.partitions, good.vector))


def _other_layout(good: cursor.Cursor) -> str:
    return cursor.encode(cursor.Cursor(good.epoch, good.partitions + 1, (*good.vector, (1, 0))))


@pytest.mark.parametrize(
    ("make_id", "reason"),
    [
        (lambda good: "not-a-cursor", "invalid"),
        (lambda good: "1" + cursor.encode(good)[1:], "invalid"),  # another format version
        (_other_epoch, "epoch"),
        (_other_layout, "layout"),
    ],
)
async def test_unusable_cursors_get_reset(
    settings: Settings, redis: Redis, make_id: Callable[[cursor.Cursor], str], reason: str
) -> None:
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream") as stream:
            await stream.next(pings=True)
            await add(redis, P0, "run.created", {})
            good = cursor.decode((await stream.next()).id)
        async with feed(client, "/api/stream", headers={"Last-Event-ID": make_id(good)}) as stream:
            reset = await stream.next()
            assert (reset.event, orjson.loads(reset.data)["reason"]) == ("reset", reason)
            await add(redis, P0, "run.created", {"after": 1})
            assert orjson.loads((await stream.next()).data) == {"after": 1}
            assert_ids_move_forward([], start=reset.id)


async def test_a_wiped_redis_resets_old_cursors(settings: Settings, redis: Redis) -> None:
    async with serve(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream") as stream:
            await stream.next(pings=True)
            await add(redis, P0, "run.created", {})
            old = (await stream.next()).id
        epoch = hub_of(app).epoch
        await redis.flushall()
        await until(lambda: hub_of(app).epoch != epoch)
        async with feed(client, "/api/stream", headers={"Last-Event-ID": old}) as stream:
            reset = await stream.next()
            assert (reset.event, orjson.loads(reset.data)["reason"]) == ("reset", "epoch")


def dashboard_event(n: int) -> dict[str, Any]:
    return {"id": f"ev-{n}", "timestamp": "2026-01-01T00:00:00.000Z", "event_type": "request",
            "command": "ask", "status": "start", "model": "m", "metadata": {"n": n}, "source": "webhook"}  # fmt: skip


async def write_history(redis: Redis, n: int) -> bytes:
    """What the aggregator commits for one event: history row and feed entry in one MULTI."""
    raw = orjson.dumps(dashboard_event(n))
    member = history.key(f"{1_700_000_000_000 + n}-0")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.history_ids(0), {member: 0})
        pipe.hset(keys.history_data(0), member, raw)
        pipe.xadd(P0, {b"t": b"event", b"d": raw})
        await pipe.execute()
    return raw


async def test_events_snapshot_then_live_without_gap_or_repeat(
    settings: Settings, redis: Redis
) -> None:
    written = [await write_history(redis, n) for n in range(5)]
    async with serve(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/events?snapshot=3") as events:
            snap = await events.take(3)
            assert [r.data.encode() for r in snap] == written[2:]  # the 3 newest, oldest first
            assert all(r.id == "" for r in snap)  # history has no feed position
            await until(lambda: hub_of(app).subscribers == 1)
            written.append(await write_history(redis, 5))
            live = await events.next()
            assert live.data.encode() == written[5] and cursor.decode(live.id)
        async with feed(client, "/api/events?snapshot=100") as events:
            assert [r.data.encode() for r in await events.take(6)] == written
            # the snapshot covered the feed: a resume from the next id repeats nothing
            written.append(await write_history(redis, 6))
            nxt = await events.next()
            assert nxt.data.encode() == written[6]
        async with feed(client, "/api/events", headers={"Last-Event-ID": nxt.id}) as events:
            written.append(await write_history(redis, 7))
            assert (await events.next()).data.encode() == written[7]
