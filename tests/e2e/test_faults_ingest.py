"""An ingest replica killed (kill -9) under load: clients that retry on the other replica see
only 2xx or retryable failures (connection refused/reset, 503), and every event either replica
acknowledged is counted exactly once (README, Guarantees: acknowledged means durable)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests import loadgen
from tests.procs import Stack, stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARTITIONS = 2


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Stack]:
    yield from stack(tmp_path)


@pytest.mark.timeout(120)
async def test_killed_ingest_replica_loses_no_acknowledged_event(procs: Stack) -> None:
    common = {"partitions": PARTITIONS, "apps": [loadgen.APP]}
    doomed, survivor = procs.service("ingest", **common), procs.service("ingest", **common)
    aggregator = procs.service("aggregator", partitions=PARTITIONS, consumer_block_ms=100)
    reader = procs.service("stream", partitions=PARTITIONS)
    replicas = itertools.cycle([doomed.url, survivor.url])  # each attempt goes to the next one
    rng = random.Random()
    ledger = loadgen.Ledger()
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=10) as client:
        load = asyncio.create_task(
            loadgen.load(client, lambda: next(replicas), ledger, stop, max_requests=400)
        )
        try:
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            await asyncio.to_thread(doomed.kill)
            killed_at = len(ledger.attempts)
            await asyncio.sleep(1.0)  # clients fail over meanwhile
            await asyncio.to_thread(doomed.start)  # as a supervisor would
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await load
        statuses = ledger.statuses()
        assert set(statuses) <= {200, 503, None}, statuses
        assert any(a.status is None for a in ledger.attempts[killed_at:]), "no failover observed"
        redis = Redis.from_url(procs.redis.url)
        try:
            await loadgen.drained(redis, PARTITIONS, aggregator)
        finally:
            await redis.aclose()
        await loadgen.expect_exactly(client, reader.url, ledger, PARTITIONS)
