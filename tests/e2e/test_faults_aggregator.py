"""kill -9 the aggregator at random moments while clients post through real HTTP to
`llmwatch serve ingest`; after it restarts, stats, history and runs hold exactly what ingest
acknowledged: nothing lost, nothing counted twice (README, Guarantees: exactly-once effect)."""

from __future__ import annotations

import asyncio
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
KILLS = 4


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Stack]:
    yield from stack(tmp_path)


@pytest.mark.timeout(150)
async def test_aggregator_killed_at_random_moments_loses_and_repeats_nothing(procs: Stack) -> None:
    common = {"partitions": PARTITIONS}
    ingest = procs.service("ingest", apps=[loadgen.APP], **common)
    reader = procs.service("stream", **common)
    # Small batches and a short claim delay: kills land mid-commit often, and the restarted
    # consumer takes over its predecessor's pending entries quickly.
    aggregator = procs.service(
        "aggregator", consumer_batch=40, consumer_block_ms=50, claim_idle_ms=300, **common
    )
    rng = random.Random()
    ledger = loadgen.Ledger()
    stop = asyncio.Event()
    redis = Redis.from_url(procs.redis.url)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            load = asyncio.create_task(
                loadgen.load(client, lambda: ingest.url, ledger, stop, max_requests=400)
            )
            try:
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.2, 1.2))  # a random moment under load
                    await asyncio.to_thread(aggregator.kill)
                    await asyncio.sleep(rng.uniform(0.0, 0.4))  # events pile up meanwhile
                    await asyncio.to_thread(aggregator.start)
            finally:
                stop.set()
                await load
            assert ledger.statuses() == {200: len(ledger.attempts)}  # ingest never noticed
            assert len(ledger.acked) > 500, "the load was not sustained"
            await loadgen.drained(redis, PARTITIONS, aggregator)
            await loadgen.expect_exactly(client, reader.url, ledger, PARTITIONS)
    finally:
        await redis.aclose()
    assert aggregator.starts == KILLS + 1
    assert aggregator.metric("llmwatch_aggregator_events_failed_total") == 0
    assert "Traceback" not in aggregator.log_text()
