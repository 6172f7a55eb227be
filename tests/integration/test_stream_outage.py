"""The gateway when Redis goes away: 503s for new requests; open streams are told, and survive a
restart without a gap. These tests start their own servers (a single one they can stop, a
3-master cluster they can kill a shard of), so they do not run on the shared test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from redis.crc import key_slot

from shared import keys
from shared.redis import connect
from shared.redis_server import EmbeddedCluster, EmbeddedRedis, free_port
from shared.settings import Settings
from tests.integration.sse_support import add, feed, hub_of, serve, until

pytestmark = pytest.mark.integration


async def test_no_redis_answers_503_problem_json(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.stream.routes.START_WAIT_S", 0.2)
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        for path in ("/api/stream", "/api/events", "/api/system", "/api/info"):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["stream"] == "redis unreachable"


async def test_open_streams_survive_a_redis_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        settings = make_settings(redis_url=server.url)
        writer = connect(settings)
        async with (
            serve(settings) as (base, app),
            httpx.AsyncClient(base_url=base) as client,
            feed(client, "/api/stream") as stream,
        ):
            await stream.next(pings=True)
            await add(writer, keys.feed_stream(0), "run.created", {"n": 1})
            first = await stream.next()
            assert orjson.loads(first.data) == {"n": 1}
            metrics = app.state.services["stream"].state["metrics"]
            await asyncio.to_thread(server.stop)
            await until(lambda: metrics.reader_errors._value.get() >= 1)
            told = await stream.next(timeout=15)
            # No id of its own: the parser's last event id is still the one before (SSE spec).
            assert (told.event, told.id) == ("unavailable", first.id)
            assert orjson.loads(told.data) == {"redis": "unavailable"}
            await asyncio.to_thread(server.start)  # same port, same AOF
            back = await stream.next(timeout=15)
            assert (back.event, orjson.loads(back.data)) == ("available", {"redis": "available"})
            await add(writer, keys.feed_stream(0), "run.created", {"n": 2})
            assert orjson.loads((await stream.next(timeout=15)).data) == {"n": 2}
            assert hub_of(app).subscribers == 1
        await writer.aclose()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_dead_shard_stops_only_its_own_streams(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Cluster, no replica: the lane of a partition whose master is killed fails (clients are
    told `unavailable`), the partitions on the other masters go on, and once the master is back
    its partition resumes where it stopped."""
    cluster = EmbeddedCluster(tmp_path / "cluster", masters=3)
    await asyncio.to_thread(cluster.start)
    try:
        settings = make_settings(redis_url=cluster.url, partitions=6)
        # the test cluster gives masters equal contiguous slot ranges
        owner = {p: key_slot(keys.feed_stream(p).encode()) * 3 // 16384 for p in range(6)}
        victim = cluster.primaries[owner[0]]
        alive = [p for p in range(6) if owner[p] != owner[0]]
        assert alive and len(alive) < 5
        writer = connect(settings)
        async with (
            serve(settings) as (base, _),
            httpx.AsyncClient(base_url=base) as client,
            feed(client, "/api/stream") as stream,
        ):
            await stream.next(pings=True)
            await add(writer, keys.feed_stream(0), "run.created", {"p": 0})
            assert orjson.loads((await stream.next()).data) == {"p": 0}
            await asyncio.to_thread(victim.kill)
            told = await stream.next(timeout=15)
            assert (told.event, orjson.loads(told.data)) == (
                "unavailable",
                {"redis": "unavailable"},
            )
            for p in alive:
                await add(writer, keys.feed_stream(p), "run.created", {"p": p})
            got = [orjson.loads((await stream.next(timeout=15)).data)["p"] for _ in alive]
            assert sorted(got) == alive
            await asyncio.to_thread(victim.start)
            back = await stream.next(timeout=30)
            assert (back.event, orjson.loads(back.data)) == ("available", {"redis": "available"})
            await add(writer, keys.feed_stream(0), "run.created", {"p": 0, "n": 2})
            assert orjson.loads((await stream.next(timeout=15)).data) == {"p": 0, "n": 2}
        await writer.aclose()
    finally:
        await asyncio.to_thread(cluster.stop)
