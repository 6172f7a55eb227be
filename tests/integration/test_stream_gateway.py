"""The live feeds over real HTTP (uvicorn on free ports, httpx + httpx-sse, a real Redis).

Feed entries are written the way the aggregator and the sampler write them (`t`, `d` fields).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from shared import cursor, history, keys
from shared.settings import Settings
from tests.integration.sse_support import add, feed, hub_of, serve, until

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

P0, P1 = keys.feed_stream(0), keys.feed_stream(1)


def dashboard_event(n: int) -> dict[str, Any]:
    return {"id": f"ev-{n}", "timestamp": "2026-01-01T00:00:00.000Z", "event_type": "request",
            "command": "ask", "status": "start", "model": "m", "metadata": {"n": n}, "source": "webhook"}  # fmt: skip


async def test_both_feeds_carry_every_entry_with_the_documented_shapes(
    settings: Settings, redis: Redis
) -> None:
    event = orjson.dumps(dashboard_event(1))
    run = {"run": {"id": "r1", "status": "ended", "end_reason": "failed"}, "error": "boom"}
    note = {"notification": {"id": "01J", "kind": "run.failed"}, "unread_count": 1}
    sample = {
        "sample": {"ts": 1, "cpu": 1.5, "mem": 20.0, "mem_used": 1, "mem_total": 5},
        "uptime": 3,
    }
    async with (
        serve(settings) as (base, app),
        httpx.AsyncClient(base_url=base) as client,
        feed(client, "/api/stream") as stream,
        feed(client, "/api/events") as events,
    ):
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.response.headers["x-accel-buffering"] == "no"
        assert (await stream.next(pings=True)).event == "ping"
        await until(lambda: hub_of(app).subscribers == 2)
        await add(redis, P0, "event", event)
        await add(redis, P0, "run.failed", run)
        await add(redis, keys.NOTIFY_FEED, "notification.created", note)
        await add(redis, keys.SYSTEM_FEED, "system", sample)
        got = await stream.take(4)
        by_name = {r.event: r for r in got}
        assert set(by_name) == {"event", "run.failed", "notification.created", "system"}
        assert by_name["event"].data.encode() == event  # the stored bytes, untouched
        assert orjson.loads(by_name["run.failed"].data) == run
        assert orjson.loads(by_name["notification.created"].data) == note
        assert orjson.loads(by_name["system"].data) == sample
        ids = [r.id for r in got]
        positions = [cursor.decode(i).position for i in ids]
        assert positions == sorted(positions) and len(set(ids)) == 4
        plain = await events.next()
        assert plain.event == "message"  # unnamed: LLM Watcher's onmessage
        assert plain.data.encode() == event
        assert plain.id == by_name["event"].id


async def test_named_event_filter(settings: Settings, redis: Redis) -> None:
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream?events=run.failed,system") as stream:
            await stream.next(pings=True)
            await add(redis, P0, "event", dashboard_event(1))
            await add(redis, P0, "run.failed", {"run": {"id": "a"}})
            await add(redis, P0, "run.created", {"run": {"id": "b"}})
            await add(redis, keys.SYSTEM_FEED, "system", {"sample": {}, "uptime": 1})
            await add(redis, P0, "run.failed", {"run": {"id": "c"}})
            got = await stream.take(3)
            # across streams, entries of the same millisecond come in stream order
            assert sorted(r.event for r in got) == ["run.failed", "run.failed", "system"]
            runs = [orjson.loads(r.data)["run"]["id"] for r in got if r.event == "run.failed"]
            assert runs == ["a", "c"]
        bad = await client.get("/api/stream", params={"events": "not a name"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["location"] == "query.events"


async def test_ping_on_connect_and_every_interval_without_id(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(sse_ping_s=0.2)
    async with (
        serve(settings) as (base, _),
        httpx.AsyncClient(base_url=base) as client,
        client.stream("GET", "/api/stream") as response,
    ):
        raw = b""
        chunks = response.aiter_raw()
        while raw.count(b"event: ping\n") < 3:
            raw += await asyncio.wait_for(chunks.__anext__(), 5)
            if raw.count(b"event: ping\n") == 1 and b"run.created" not in raw:
                await add(redis, P0, "run.created", {"run": {"id": "x"}})
                await asyncio.sleep(0)
    frames = [f for f in raw.split(b"\n\n") if f]
    pings = [f for f in frames if b"event: ping" in f]
    assert frames[0] == b"event: ping\ndata: {}"  # first thing on connect
    assert all(p == b"event: ping\ndata: {}" for p in pings)  # never an id
    assert any(f.startswith(b"id: ") and b"event: run.created" in f for f in frames)


async def test_resume_across_a_gateway_restart_loses_nothing_and_repeats_nothing(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(partitions=2)
    streams = [P0, P1, keys.NOTIFY_FEED, keys.SYSTEM_FEED]
    sent: list[tuple[str, bytes]] = []

    async def publish(n: int) -> None:
        for i in range(n):
            stream = streams[i % len(streams)]
            payload = orjson.dumps({"n": len(sent)})
            await add(redis, stream, "event" if stream in (P0, P1) else "system", payload)
            sent.append((stream, payload))

    async with (
        serve(settings) as (base, _),
        httpx.AsyncClient(base_url=base) as client,
        feed(client, "/api/stream") as stream,
    ):
        await stream.next(pings=True)
        await publish(10)
        first = await stream.take(6)
    last_id = first[-1].id
    await publish(10)  # while no gateway runs
    async with serve(settings) as (base, _app), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream", headers={"Last-Event-ID": last_id}) as stream:
            await stream.next(pings=True)
            await publish(10)  # live, racing the replay hand-over
            rest = await stream.take(24)
        # ?lastEventId= works the same (EventSource cannot set headers on a first connect)
        async with feed(client, f"/api/stream?lastEventId={first[2].id}") as again:
            await again.next(pings=True)
            tail = await again.take(27)
    got = first + rest
    assert sorted(r.data.encode() for r in got) == sorted(payload for _, payload in sent)
    positions = [cursor.decode(r.id).position for r in got]
    assert positions == sorted(set(positions))  # delivery order, each entry once
    assert [(r.id, r.data) for r in tail] == [(r.id, r.data) for r in got[3:]]


async def test_two_replicas_give_the_same_ids_and_resume_each_other(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(partitions=3)
    streams = [keys.feed_stream(p) for p in range(3)] + [keys.NOTIFY_FEED, keys.SYSTEM_FEED]

    async def writer(w: int) -> None:
        for i in range(40):
            await add(redis, streams[(w + i) % len(streams)], "event", {"w": w, "i": i})

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
        assert [(r.id, r.data) for r in got_a] == [(r.id, r.data) for r in got_b]
        assert len({r.id for r in got_a}) == 200
        # a cursor from replica A resumes on replica B with exactly the rest
        async with feed(cb, "/api/stream", headers={"Last-Event-ID": got_a[99].id}) as fb2:
            rest = await fb2.take(100)
        assert [(r.id, r.data) for r in rest] == [(r.id, r.data) for r in got_a[100:]]


async def test_truncated_reads_and_paged_replays_keep_the_order(
    make_settings: Callable[..., Settings], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream whose read (or replay page) hit COUNT may still hold entries that come before
    what other streams returned: those must wait. Explicit ids a little in the future make the
    layout exact: ten entries in one millisecond on P0, then one a millisecond later elsewhere."""
    monkeypatch.setattr("services.stream.hub.READ_COUNT", 3)
    monkeypatch.setattr("services.stream.replay.PAGE", 4)
    settings = make_settings(partitions=2)
    seconds, micros = await redis.time()
    future = seconds * 1000 + micros // 1000 + 300
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        async with feed(client, "/api/stream") as stream:
            await stream.next(pings=True)
            async with redis.pipeline(transaction=False) as pipe:
                for seq in range(10):
                    await add(
                        pipe, P0, "run.updated", {"at": [future, seq, 0]}, id=f"{future}-{seq}"
                    )
                await add(
                    pipe,
                    keys.NOTIFY_FEED,
                    "run.updated",
                    {"at": [future + 1, 0, 2]},
                    id=f"{future + 1}-0",
                )
                await add(pipe, P1, "run.updated", {"at": [future + 1, 0, 1]}, id=f"{future + 1}-0")
                await pipe.execute()
            live = await stream.take(12)
        async with feed(client, "/api/stream", headers={"Last-Event-ID": live[0].id}) as stream:
            resumed = await stream.take(11)
    expected = sorted(
        [[future, seq, 0] for seq in range(10)] + [[future + 1, 0, 1], [future + 1, 0, 2]]
    )
    assert [orjson.loads(r.data)["at"] for r in live] == expected
    assert [(r.id, r.data) for r in resumed] == [(r.id, r.data) for r in live[1:]]


async def test_a_stalled_client_is_dropped_while_fifty_others_keep_receiving(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(sse_queue_frames=32, sse_send_timeout_s=3, sse_max_per_ip=100)
    total = 200
    async with serve(settings) as (base, app):
        hub = hub_of(app)
        port = int(base.rsplit(":", 1)[1])
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        try:
            limits = httpx.Limits(max_connections=60)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

                async def consume() -> list[str]:
                    async with feed(client, "/api/stream?events=run.created") as stream:
                        await stream.next(pings=True)
                        ready.release()
                        return [r.data for r in await stream.take(total, timeout=30)]

                ready = asyncio.Semaphore(0)
                consumers = [asyncio.create_task(consume()) for _ in range(50)]
                for _ in range(50):
                    await asyncio.wait_for(ready.acquire(), 10)
                await until(lambda: hub.subscribers == 51)
                # 64 KiB entries only the stalled client takes, to fill its socket quickly,
                # interleaved with the small ones everybody else takes
                big = orjson.dumps({"pad": "x" * 65536})
                for i in range(total):
                    async with redis.pipeline(transaction=False) as pipe:
                        pipe.xadd(P0, {b"t": b"run.updated", b"d": big})
                        pipe.xadd(P0, {b"t": b"run.created", b"d": orjson.dumps({"i": i})})
                        await pipe.execute()
                expected = [orjson.dumps({"i": i}).decode() for i in range(total)]
                assert await asyncio.gather(*consumers) == [expected] * 50
            metrics = app.state.services["stream"].state["metrics"]
            await until(lambda: sum(
                metrics.clients_dropped.labels(r)._value.get() for r in ("slow", "timeout")
            ) == 1)  # fmt: skip
            await until(lambda: hub.subscribers == 0)  # the others left when their client closed
            # the server aborted the connection: reading now ends (EOF or reset), never blocks
            stalled.settimeout(5)
            with pytest.raises((ConnectionResetError, EOFError)):
                while stalled.recv(1 << 20):
                    pass
                raise EOFError
        finally:
            stalled.close()


async def test_stream_limits_answer_429_problem_json(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(sse_max_per_ip=2, sse_max_streams=3, retry_after_s=7)
    async with serve(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
        # uvicorn trusts X-Forwarded-For from 127.0.0.1, so each header is a distinct client
        one, two, three = ({"X-Forwarded-For": ip} for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
        async with (
            feed(client, "/api/stream", headers=one),
            feed(client, "/api/events", headers=one),
        ):
            per_ip = await client.get("/api/stream", headers=one)
            assert per_ip.status_code == 429
            assert per_ip.headers["content-type"] == "application/problem+json"
            assert per_ip.headers["retry-after"] == "7"
            assert per_ip.json()["status"] == 429 and "your address" in per_ip.json()["detail"]
            async with feed(client, "/api/stream", headers=two):
                process = await client.get("/api/events", headers=three)
                assert process.status_code == 429
                assert "this process" in process.json()["detail"]
        limits = app.state.services["stream"].state["gateway"].limits
        await until(lambda: limits.total == 0)  # closed streams give their slots back
        async with feed(client, "/api/stream", headers=one) as again:
            assert (await again.next(pings=True)).event == "ping"


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


@pytest.mark.parametrize(
    ("make_id", "reason"),
    [
        (lambda good: "not-a-cursor", "invalid"),
        (lambda good: cursor.encode(cursor.Cursor("zz", 1, good.position)), "epoch"),
        (lambda good: cursor.encode(cursor.Cursor(good.epoch, 4, good.position)), "layout"),
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
