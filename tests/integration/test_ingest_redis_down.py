"""Redis down, gone and back, or too slow: ingest answers 503 + Retry-After promptly (never a
hang, never a 500) and recovers by itself."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.targets import create_app
from shared import keys
from shared.redis_server import EmbeddedRedis, free_port
from shared.samples import LLMONITOR_PATHS, WATCHER_PATH
from shared.settings import Settings
from tests.helpers import app_client

pytestmark = pytest.mark.integration

EVENT = {"event_type": "request", "command": "ask", "status": "start"}
RUN = {
    "type": "llm",
    "event": "start",
    "app": "a1",
    "runId": "r1",
    "timestamp": "2026-01-01T00:00:00Z",
}


@contextlib.asynccontextmanager
async def ingest(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(settings, "ingest")) as client:
        yield client


def unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1


async def test_closed_port_gives_503_on_every_route(tmp_path: Path) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", data_dir=tmp_path)
    async with ingest(settings) as client:
        unavailable(await client.post(WATCHER_PATH, json=EVENT))
        unavailable(await client.post(WATCHER_PATH, json=[EVENT, EVENT]))
        for path in LLMONITOR_PATHS:
            unavailable(await client.post(path, json=[RUN]))  # the app registry cannot answer
        unavailable(await client.post("/api/apps", json={"name": "x"}))
        unavailable(await client.get("/api/apps"))
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["ingest"].startswith(
            "redis unreachable"
        )
        # configured rate limits cannot be counted either: still 503, not 500
    async with ingest(settings.model_copy(update={"rate_limit_per_ip": 5})) as client:
        unavailable(await client.post(WATCHER_PATH, json=EVENT))


async def test_redis_stopped_and_restarted(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis").start()
    again = EmbeddedRedis(tmp_path / "redis", port=first.port)  # same port, same AOF
    settings = Settings(redis_url=first.url, data_dir=tmp_path, apps=["a1"])
    try:
        async with ingest(settings) as client:
            assert (await client.post(WATCHER_PATH, json=EVENT)).status_code == 200
            first.stop()
            unavailable(await client.post(WATCHER_PATH, json=EVENT))
            unavailable(await client.post(LLMONITOR_PATHS[0], json=[RUN]))
            assert (await client.get("/readyz")).status_code == 503
            again.start()
            assert (await client.post(WATCHER_PATH, json=EVENT)).status_code == 200
            assert (await client.post(LLMONITOR_PATHS[0], json=[RUN])).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
        check = Redis.from_url(again.url)
        assert await check.xlen(keys.events_stream(0)) == 3  # the AOF kept the first one
        await check.aclose()
    finally:
        first.stop()
        again.stop()


async def test_slow_redis_is_a_503_after_the_publish_timeout(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        settings = Settings(redis_url=server.url, data_dir=tmp_path, publish_timeout_ms=200)
        admin = Redis.from_url(server.url)
        try:
            async with ingest(settings) as client:
                await admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")  # writes stall
                try:
                    response = await client.post(WATCHER_PATH, json=EVENT)
                    unavailable(response)
                    assert "200 ms" in response.json()["detail"]
                finally:
                    await admin.execute_command("CLIENT", "UNPAUSE")
                assert (await client.post(WATCHER_PATH, json=EVENT)).status_code == 200
        finally:
            await admin.aclose()
