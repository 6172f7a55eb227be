"""Ingest on a real socket (uvicorn): streamed-body limits, a trickled body, `llmwatch send`
and `llmwatch tail` against it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from services.sender import send_samples
from services.tail import tail
from services.targets import create_app
from shared.keys import EVENT_FIELD, events_stream
from shared.samples import all_samples
from shared.settings import Settings
from tests.helpers import live_server

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

EVENT = {"event_type": "request", "command": "ask", "status": "start"}


async def test_chunked_body_over_the_limit_is_cut_off(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"event_type": "request", "command": "ask", "status": "start", "metadata": {"x": "'
        for _ in range(64):
            yield b"x" * 1024  # 64 KiB, no Content-Length: only counting while reading catches it
        yield b'"}}'

    app = create_app(make_settings(max_body_bytes=16 * 1024), "ingest")
    async with live_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/open-wrapper", content=chunks())
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/problem+json")
        # the Content-Length precheck refuses before reading anything
        response = await client.post("/api/open-wrapper", content=b"x" * (17 * 1024))
        assert response.status_code == 413
    assert await redis.xlen(events_stream(0)) == 0


@pytest.mark.timeout(30)
async def test_trickled_body_times_out_with_408(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    async with live_server(create_app(make_settings(body_timeout_s=0.3), "ingest")) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"POST /api/open-wrapper HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"event_type": '
            )
            await writer.drain()  # ... and nothing more: the server must give up, not wait
            status_line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    assert await redis.xlen(events_stream(0)) == 0


async def test_send_then_tail(
    make_settings: Callable[..., Settings], redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    async with live_server(create_app(make_settings(), "ingest")) as url:
        code = await asyncio.to_thread(send_samples, url)
        again = await asyncio.to_thread(send_samples, url)  # finds the demo app this time
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and again == 0
    assert sum("registered app llmwatch-demo" in line for line in out) == 1
    requests = len(all_samples())
    assert sum(line.startswith("200 POST /") for line in out) == 2 * requests
    assert out[-1].endswith("0 failed")

    entries = await redis.xrange(events_stream(0))
    printed = io.StringIO()
    await tail(redis, 1, 5, False, out=printed)
    lines = printed.getvalue().splitlines()
    assert [orjson.loads(line) for line in lines] == [
        orjson.loads(f[EVENT_FIELD]) for _, f in entries[-5:]
    ]


async def test_tail_merges_partitions_and_follows(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    for i in range(4):  # explicit ids: arrival order across the two partitions is 0, 1, 2, 3
        await redis.xadd(
            events_stream(i % 2), {EVENT_FIELD: orjson.dumps({"n": i})}, id=f"{1000 + i}-0"
        )
    printed = io.StringIO()
    await tail(redis, 2, 3, False, out=printed)
    assert [orjson.loads(x)["n"] for x in printed.getvalue().splitlines()] == [1, 2, 3]

    followed = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(tail(redis, 2, 0, True, out=followed, stop=stop))
    try:
        for _ in range(500):  # the follower prints what arrives after it started
            await redis.xadd(events_stream(1), {EVENT_FIELD: b'{"n":"new"}'})
            if '{"n":"new"}' in followed.getvalue():
                break
            await asyncio.sleep(0.01)
        assert followed.getvalue().splitlines()[0] == '{"n":"new"}'
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_send_reports_an_unreachable_stack(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.redis_server import free_port

    code = await asyncio.to_thread(send_samples, f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err
