"""The lane's run cache (services/aggregator/runcache.py) on a real Redis: batches fold on the
run states earlier commits published, and the result is the same as reading them back, also
when a publication does not land and when another replica moved a cached run meanwhile."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from services.aggregator import runcache, scripts
from services.stream.reads import read_run, read_stats
from shared import keys
from shared.settings import Settings
from tests.aggregator_support import consumer, publish, webhook

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

SESSIONS = [f"sess-{i}" for i in range(5)]


def session_events(n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` webhook events spread over SESSIONS, so consecutive batches share runs."""
    return [
        webhook("completion", "completed",
                metadata={"session_id": SESSIONS[i % len(SESSIONS)], "tokens": 1})
        for i in range(start, start + n)
    ]  # fmt: skip


async def assert_runs(redis: Redis, settings: Settings, events: list[dict[str, Any]]) -> None:
    stats = await read_stats(redis, settings.partitions)
    assert stats["total"] == len(events) and stats["tokens"]["completion"] == len(events)
    for sid in SESSIONS:
        run = await read_run(redis, settings.partitions, sid)
        expected = sum(1 for e in events if e["metadata"]["session_id"] == sid)
        assert run is not None and run["events"] == expected, sid
        assert run["tokens"]["completion"] == expected


async def test_a_publication_that_does_not_land_sends_the_batches_after_it_back_to_redis(
    redis: Redis, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tenth commit is refused as if it conflicted, at random latencies: the batches that
    folded on its published runs must notice and fold again from what Redis holds, and the
    batches after them fold on landed states again (a miss does not cascade)."""
    settings = make_settings(partitions=1, consumer_batch=7)
    commit, rng, calls = scripts.COMMIT, random.Random(3), [0]

    async def refusing(*args: Any) -> Any:
        calls[0] += 1
        await asyncio.sleep(rng.uniform(0, 0.003))
        return 0 if calls[0] % 10 == 0 else await commit(*args)

    checks: list[bool] = []
    valid = runcache.Known.valid

    def recorded(self: runcache.Known) -> bool:
        result = valid(self)
        checks.append(result)
        return result

    monkeypatch.setattr(scripts, "COMMIT", refusing)
    monkeypatch.setattr(runcache.Known, "valid", recorded)
    events = session_events(200)
    await publish(redis, settings, events)
    running = consumer(redis, settings)  # run(): batches overlap, as in production
    task = asyncio.create_task(running.run())
    try:
        for _ in range(400):
            if (await read_stats(redis, 1))["total"] == len(events):
                break
            await asyncio.sleep(0.025)
    finally:
        running.stopping.set()
        await task
    assert False in checks  # a guess was refused
    assert checks.count(True) > 2 * checks.count(False)  # and guessing resumed after it
    await assert_runs(redis, settings, events)
    feed = [
        orjson.loads(f[keys.FEED_DATA_FIELD])["id"]
        for _, f in await redis.xrange(keys.feed_stream(0))
        if f[keys.FEED_TYPE_FIELD] == b"event"
    ]
    assert feed == [e["id"] for e in events]  # still in stream order


async def test_a_run_another_replica_moved_is_read_again_not_overwritten(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partitions=1, consumer_batch=50)
    first, second = consumer(redis, settings, "a"), consumer(redis, settings, "b")
    events = session_events(30)
    await publish(redis, settings, events)
    await first.drain()  # `a` now knows every session's state
    more = session_events(30, start=30)
    await publish(redis, settings, more)
    await second.drain()  # `b` moves every session on: what `a` knows is stale
    last = session_events(30, start=60)
    await publish(redis, settings, last)
    await first.drain()
    assert first.metrics.conflicts._value.get() >= 1  # its guess was refused, then read again
    await assert_runs(redis, settings, events + more + last)
