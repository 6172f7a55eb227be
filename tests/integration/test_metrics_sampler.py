"""The metrics sampler and the system snapshots, over real HTTP with a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from services.metrics import ring
from shared import keys, system
from shared.settings import Settings, load_settings
from tests.integration.sse_support import feed, serve, until

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


async def test_the_sampler_publishes_sane_system_events(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(sample_interval_s=0.05)
    async with (
        serve(settings, "stream", "metrics") as (base, _),
        httpx.AsyncClient(base_url=base) as client,
    ):
        async with feed(client, "/api/stream?events=system") as stream:
            event = await stream.next()
        assert event.event == "system" and event.id
        body = orjson.loads(event.data)
        assert set(body) == {"sample", "uptime"}
        sample = body["sample"]
        assert set(sample) == {"ts", "cpu", "mem", "mem_used", "mem_total"}
        assert abs(sample["ts"] / 1000 - time.time()) < 60
        assert 0 <= sample["cpu"] <= 100
        assert 0 < sample["mem"] <= 100
        assert 0 < sample["mem_used"] <= sample["mem_total"]
        assert body["uptime"] >= 0
        current = (await client.get("/api/system")).json()
        assert set(current) == {"sample", "uptime", "cpu_cores", "version"}
        assert current["cpu_cores"] >= 1 and current["version"]
        assert set(current["sample"]) == set(sample)
        metrics = (await client.get("/metrics")).text
        assert "llmwatch_system_cpu_percent" in metrics
        assert "llmwatch_system_memory_percent" in metrics


async def test_history_holds_the_last_32_oldest_first(settings: Settings, redis: Redis) -> None:
    for n in range(40):
        sample = {"ts": 1000 + n, "cpu": 1.0, "mem": 2.0, "mem_used": 1, "mem_total": 2}
        await ring.publish_sample(redis, sample, uptime=n, cpu_cores=4)
    assert await redis.xlen(keys.SYSTEM_SAMPLES) == 32
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        items = (await client.get("/api/system/history")).json()["items"]
        assert [s["ts"] for s in items] == list(range(1008, 1040))
        current = (await client.get("/api/system")).json()
        assert current["sample"] == items[-1] and current["uptime"] == 39
        assert current["cpu_cores"] == 4


async def test_system_routes_before_the_first_sample(settings: Settings) -> None:
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/api/system/history")).json() == {"items": []}
        current = (await client.get("/api/system")).json()
        assert current["sample"] is None and current["cpu_cores"] >= 1
        info = (await client.get("/api/info")).json()
        assert info["config_stale"] is False and info["version"]
        assert info["partitions"] == settings.partitions


async def test_sampler_ticks_fill_the_ring(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(sample_interval_s=0.02)
    async with serve(settings, "metrics") as (_, app):
        sampler = app.state.services["metrics"].state["sampler"]
        await until(lambda: sampler.metrics.samples._value.get() >= 3)
    assert sampler.metrics.errors._value.get() == 0  # no tick failed (ring, flag, pressure)
    items = await system.history(redis)
    assert len(items) >= 3 and [s["ts"] for s in items] == sorted(s["ts"] for s in items)
    latest = await system.latest(redis)
    assert latest is not None and latest["sample"] == items[-1] and latest["cpu_cores"] >= 1


async def test_stale_flag_flips_once_per_change(redis: Redis) -> None:
    assert await ring.set_stale(redis, True) is True
    assert await ring.set_stale(redis, True) is False  # a repeat announces nothing
    assert await system.config_stale(redis) is True
    assert await ring.set_stale(redis, False) is True
    entries = await redis.xrange(keys.SYSTEM_FEED)
    assert [(f[b"t"], orjson.loads(f[b"d"])) for _, f in entries] == [
        (b"config.stale", {"stale": True}),
        (b"config.stale", {"stale": False}),
    ]


async def test_config_stale_flips_and_reload_applies(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "llmwatch.toml"
    config.write_text("sse_ping_s = 30\n")
    monkeypatch.setenv("LLMWATCH_CONFIG", str(config))
    monkeypatch.setenv("LLMWATCH_SAMPLE_INTERVAL_S", "0.05")  # env, so a reload keeps it
    settings = make_settings()
    assert settings.sse_ping_s == 30
    async with (
        serve(settings, "stream", "metrics") as (base, _app),
        httpx.AsyncClient(base_url=base) as client,
    ):
        assert (await client.get("/api/info")).json()["config_stale"] is False
        async with feed(client, "/api/stream?events=config.stale") as stream:
            await stream.next(pings=True)
            config.write_text("sse_ping_s = 7\npartitions = 4\n")
            flipped = await stream.next()
            assert orjson.loads(flipped.data) == {"stale": True}
            assert (await client.get("/api/info")).json()["config_stale"] is True

            broken = config.read_text()
            config.write_text("sse_ping_s = \n")
            bad = await client.post("/api/reload")
            assert bad.status_code == 422
            assert bad.headers["content-type"] == "application/problem+json"
            config.write_text("sse_ping_s = -1\n")
            invalid = await client.post("/api/reload")
            assert invalid.status_code == 422
            assert invalid.json()["errors"][0]["location"] == "config.sse_ping_s"
            assert (await client.get("/api/info")).json()["config_stale"] is True
            config.write_text(broken)

            done = await client.post("/api/reload")
            assert done.status_code == 200
            assert done.json()["applied"] == {"sse_ping_s": 7}
            assert done.json()["restart_required"] == ["partitions"]
            cleared = await stream.next()
            assert orjson.loads(cleared.data) == {"stale": False}
        assert settings.sse_ping_s == 7  # the process's settings, shared by every service
        assert (await client.get("/api/info")).json()["config_stale"] is False


async def test_reload_needs_the_admin_token_when_set(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(admin_token="s3cret")
    async with serve(settings, "metrics") as (base, _), httpx.AsyncClient(base_url=base) as client:
        refused = await client.post("/api/reload")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        ok = await client.post("/api/reload", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


async def test_read_routes_need_the_read_token_when_set(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(read_token="r3ad")
    async with serve(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        for path in (
            "/api/system",
            "/api/system/history",
            "/api/info",
            "/api/stream",
            "/api/events",
        ):
            assert (await client.get(path)).status_code == 401, path
        assert (
            await client.get("/api/info", headers={"Authorization": "Bearer r3ad"})
        ).status_code == 200
        async with feed(client, "/api/stream?token=r3ad") as stream:  # EventSource: query token
            assert (await stream.next(pings=True)).event == "ping"


async def test_sustained_pressure_raises_one_coalesced_notification(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(
        sample_interval_s=0.02, pressure_mem_pct=0.01, pressure_cpu_pct=100, pressure_for_s=0.1
    )
    async with serve(settings, "metrics") as (_, app):
        sampler = app.state.services["metrics"].state["sampler"]
        await until(lambda: sampler.states["memory"].raised)
        samples = int(sampler.metrics.samples._value.get())
        await until(lambda: sampler.metrics.samples._value.get() >= samples + 5)
    feed_entries = await redis.xrange(keys.NOTIFY_FEED)
    created = [orjson.loads(f[b"d"]) for _, f in feed_entries if f[b"t"] == b"notification.created"]
    assert len(created) == 1  # one episode, one raise
    note = created[0]["notification"]
    assert (note["kind"], note["task_name"], note["severity"]) == (
        "resource.pressure",
        "memory",
        "warning",
    )
    assert await redis.hlen(keys.NOTIFY_ROWS) == 1


def test_load_settings_reads_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "llmwatch.toml"
    config.write_text("sse_ping_s = 3\n")
    monkeypatch.setenv("LLMWATCH_CONFIG", str(config))
    assert load_settings().sse_ping_s == 3
