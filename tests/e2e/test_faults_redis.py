"""kill -9 redis-server (AOF `appendfsync always`) while clients post through ingest and SSE
clients watch: during the outage ingest answers 503 + Retry-After within the publish timeout,
every /readyz goes 503, open live streams stay open (pings continue) and a resuming stream ends
at once so its client retries; once Redis is back on the same port and data directory, every
service recovers without a restart and every event acknowledged with 2xx is there exactly once:
in stats, history, runs, and on both SSE clients."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from redis.asyncio import Redis

from tests import loadgen
from tests.procs import Service, Stack, stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PUBLISH_TIMEOUT_MS = 500
FEED = "/api/stream?events=event"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Stack]:
    yield from stack(tmp_path, appendfsync="always")


@dataclass
class Watcher:
    """An SSE client of /api/stream collecting DashboardEvent ids, pings and stream ends."""

    events: list[str] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    refusals: list[int] = field(default_factory=list)
    last_id: str | None = None

    async def follow(self, client: httpx.AsyncClient, url: str, *, resume: bool) -> None:
        """Read until cancelled; with `resume`, reconnect after each end with Last-Event-ID."""
        while True:
            headers = {"Last-Event-ID": self.last_id} if resume and self.last_id else {}
            with contextlib.suppress(httpx.TransportError):
                async with aconnect_sse(client, "GET", url + FEED, headers=headers) as source:
                    if source.response.status_code != 200:
                        self.refusals.append(source.response.status_code)
                    else:
                        async for sse in source.aiter_sse():
                            if sse.event == "ping":
                                self.pings.append(time.monotonic())
                            elif sse.event == "event":
                                self.events.append(orjson.loads(sse.data)["id"])
                                self.last_id = sse.id
            self.ends.append(time.monotonic())
            if not resume:
                return
            await asyncio.sleep(0.1)


async def readiness(client: httpx.AsyncClient, services: list[Service]) -> set[int]:
    answers = await asyncio.gather(*(client.get(s.url + "/readyz") for s in services))
    return {r.status_code for r in answers}


@pytest.mark.timeout(150)
async def test_redis_killed_under_load_loses_no_acknowledged_event(procs: Stack) -> None:
    ingest = procs.service("ingest", apps=[loadgen.APP], publish_timeout_ms=PUBLISH_TIMEOUT_MS)
    aggregator = procs.service("aggregator", consumer_block_ms=100, claim_idle_ms=500)
    gateway = procs.service("stream", sse_ping_s=0.3)
    sampler = procs.service("metrics", sample_interval_s=0.5)
    services = [ingest, aggregator, gateway, sampler]
    ledger = loadgen.Ledger()
    stop = asyncio.Event()
    live, resumer = Watcher(), Watcher()
    probe = loadgen.webhook_session(random.Random(-1))
    async with httpx.AsyncClient(timeout=10) as client:
        watching = asyncio.create_task(live.follow(client, gateway.url, resume=False))
        await loadgen.until(lambda: live.pings, timeout=10, every=0.02)
        load = asyncio.create_task(
            loadgen.load(client, lambda: ingest.url, ledger, stop, max_requests=400)
        )
        resuming: asyncio.Task[None] | None = None
        try:
            await loadgen.until(lambda: len(live.events) > 100, timeout=20, every=0.02)
            await asyncio.to_thread(procs.redis.kill)
            killed_at = time.monotonic()
            cursor, seen_before = live.last_id, len(live.events)

            # A write is refused promptly and retryably.
            started = time.monotonic()
            refused = await client.post(
                ingest.url + probe.path, content=probe.body, headers=loadgen.JSON
            )
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["retry-after"]) >= 1
            assert time.monotonic() - started < PUBLISH_TIMEOUT_MS / 1000 + 1.5
            # Readiness goes red everywhere.
            await loadgen.until(lambda: _all_503(client, services), timeout=10)
            # A client resuming now is told: its stream ends, and it keeps retrying.
            resumer.last_id = cursor
            resuming = asyncio.create_task(resumer.follow(client, gateway.url, resume=True))
            await loadgen.until(lambda: len(resumer.ends) >= 2, timeout=10, every=0.02)
            # The open live stream stays open and keeps pinging through the outage.
            pings_before = len(live.pings)
            await loadgen.until(lambda: len(live.pings) >= pings_before + 2, timeout=5, every=0.02)
            assert not watching.done()

            await asyncio.to_thread(procs.redis.start)  # same port, same data dir: AOF replayed
            back_at = time.monotonic()
            await loadgen.until(lambda: _all_200(client, services), timeout=20)
            await loadgen.deliver(client, lambda: ingest.url, probe, ledger)  # its retry
            ledger.ack(-1, probe)
            await asyncio.sleep(1.0)  # more load after the recovery
        finally:
            stop.set()
            await load
        outage = [a for a in ledger.attempts if killed_at <= a.at <= back_at + 5]
        assert {a.status for a in ledger.attempts} <= {200, 503}
        failed = [a for a in outage if a.status == 503]
        assert failed, "the load saw no outage"
        assert all(a.retry_after and int(a.retry_after) >= 1 for a in failed)
        assert max(a.seconds for a in failed) < PUBLISH_TIMEOUT_MS / 1000 + 1.5

        redis = Redis.from_url(procs.redis.url)
        try:
            await loadgen.drained(redis, 1, aggregator)
        finally:
            await redis.aclose()
        await loadgen.expect_exactly(client, gateway.url, ledger, 1)
        # Both SSE clients end up with every acknowledged event, once, in the same order.
        await loadgen.until(lambda: len(live.events) >= len(ledger.acked), timeout=20)
        await loadgen.until(
            lambda: len(resumer.events) >= len(ledger.acked) - seen_before, timeout=20
        )
        assert resuming is not None
        await loadgen.cancel(watching, resuming)
    assert len(live.events) == len(set(live.events)) == len(ledger.acked)
    assert set(live.events) == set(ledger.acked)
    assert resumer.events == live.events[seen_before:]
    assert not resumer.refusals
    for svc in services:  # recovered by itself: never restarted, never crashed
        assert svc.starts == 1 and svc.alive(), svc.log_tail()


async def _all_503(client: httpx.AsyncClient, services: list[Service]) -> bool:
    return await readiness(client, services) == {503}


async def _all_200(client: httpx.AsyncClient, services: list[Service]) -> bool:
    return await readiness(client, services) == {200}
