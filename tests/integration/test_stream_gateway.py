"""The live feeds over real HTTP (uvicorn on free ports, httpx + httpx-sse, a real Redis):
shapes, filters, pings, slow clients and limits. Resume: test_stream_resume.py.

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

from shared import cursor, keys
from shared.settings import Settings
from tests.integration.sse_support import add, assert_ids_move_forward, feed, hub_of, serve, until

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

P0 = keys.feed_stream(0)


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
        assert_ids_move_forward(got)
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
            # one stream keeps its order; how two streams interleave is not defined
            assert sorted(r.event for r in got) == ["run.failed", "run.failed", "system"]
            runs = [orjson.loads(r.data)["run"]["id"] for r in got if r.event == "run.failed"]
            assert runs == ["a", "c"]
            assert_ids_move_forward(got)
        # the query is checked by hand on these plain-ASGI routes, as FastAPI would
        for path, params, location in [
            ("/api/stream", {"events": "not a name"}, "query.events"),
            ("/api/stream", {"events": "a" * 2001}, "query.events"),
            ("/api/events", {"snapshot": "-1"}, "query.snapshot"),
            ("/api/events", {"snapshot": "many"}, "query.snapshot"),
        ]:
            bad = await client.get(path, params=params)
            assert bad.status_code == 422, (path, params)
            assert bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["errors"][0]["location"] == location
        # a cursor is never refused: one that cannot be resumed gets `reset`
        too_long = "2" * (cursor.MAX_TEXT + 1)
        async with feed(client, "/api/stream", params={"lastEventId": too_long}) as stream:
            reset = await stream.next()
            assert (reset.event, orjson.loads(reset.data)["reason"]) == ("reset", "invalid")


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
