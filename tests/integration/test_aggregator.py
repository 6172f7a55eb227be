"""The aggregator on a real Redis: exactly-once effect under redelivery, reclaim, dead letters,
replicas and cut commits; trimming (runs: test_aggregator_runs.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.aggregator import scripts, store
from services.aggregator.fold import prepare
from services.stream.reads import read_run, read_stats
from shared import history, keys, notify
from shared.redis import connect
from shared.settings import Settings
from tests.aggregator_support import consumer, llmonitor, publish, routing_key, webhook
from tests.loadgen import until

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


def batch(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [webhook("completion", "completed", metadata={"tokens": 1, **kw}) for _ in range(n)]


async def history_ids(redis: Redis, partitions: int) -> list[str]:
    items, cursor = await history.read_page(redis, partitions, history.Query(limit=5000))
    assert cursor is None
    return [i["id"] for i in items]


async def test_drain_applies_everything_once(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partitions=4)
    events = batch(300)
    await publish(redis, settings, events)
    await consumer(redis, settings).drain()
    stats = await read_stats(redis, settings.partitions)
    assert stats["total"] == 300 and stats["tokens"]["completion"] == 300
    assert sorted(await history_ids(redis, 4)) == sorted(e["id"] for e in events)
    feed = [f for p in range(4) for _, f in await redis.xrange(keys.feed_stream(p))]
    assert len(feed) == 300  # one `event` entry each (no runs in this batch)
    assert {f[keys.FEED_TYPE_FIELD] for f in feed} == {b"event"}
    assert sorted(orjson.loads(f[keys.FEED_DATA_FIELD])["id"] for f in feed) == sorted(
        e["id"] for e in events
    )


async def test_each_partition_feed_keeps_the_order_of_its_events(
    redis: Redis, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches overlap (one is folded while the previous commits), yet a partition's feed lists
    its events in stream order: the live dashboard shows what /api/history lists, in order.
    Commit round trips get random latency here, as on a loaded machine."""
    settings = make_settings(consumer_batch=40)
    commit, rng = scripts.COMMIT, random.Random(7)

    async def slow_commit(*args: Any) -> Any:
        await asyncio.sleep(rng.uniform(0, 0.004))
        return await commit(*args)

    monkeypatch.setattr(scripts, "COMMIT", slow_commit)
    runs = [llmonitor("start", f"run-{i}", name="gpt-4o") for i in range(600)]
    await publish(redis, settings, runs)
    running = consumer(redis, settings)  # run(), not drain(): drain settles every batch
    task = asyncio.create_task(running.run())

    async def applied() -> bool:
        return (await read_stats(redis, settings.partitions))["total"] == len(runs)

    await until(applied, 30)
    running.stopping.set()
    await task
    for p in range(settings.partitions):
        # publish() XADDs in list order (the events stream itself is trimmed once applied)
        stream = [
            e["id"] for e in runs if keys.partition_for(routing_key(e), settings.partitions) == p
        ]
        feed = [
            orjson.loads(f[keys.FEED_DATA_FIELD])["id"]
            for _, f in await redis.xrange(keys.feed_stream(p))
            if f[keys.FEED_TYPE_FIELD] == b"event"
        ]
        assert feed == stream


async def test_client_resend_with_same_id_counts_once(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partitions=2)
    events = batch(50)
    await publish(redis, settings, events)
    worker = consumer(redis, settings)
    await worker.drain()
    await publish(redis, settings, events[:20])  # re-sent: new stream entries, same event ids
    await worker.drain()
    assert (await read_stats(redis, 2))["total"] == 50
    assert len(await history_ids(redis, 2)) == 50
    assert worker.metrics.duplicates._value.get() == 20


async def pending(redis: Redis, settings: Settings) -> int:
    total = 0
    for p in range(settings.partitions):
        info = await redis.xpending(keys.events_stream(p), keys.AGGREGATOR_GROUP)
        total += int(info["pending"])
    return total


async def test_crash_after_commit_before_the_bell_raises_once_and_counts_once(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(claim_idle_ms=100)
    events = [*batch(30), webhook("error", "failed", command="ask", metadata={"error": "boom"})]
    await publish(redis, settings, events)
    crashed = consumer(redis, settings, name="crashed")
    delivered = await crashed.take()
    assert await pending(redis, settings) == 31
    for partition, taken in delivered.items():
        entries = [(sid, raw) for sid, raw, _ in taken if raw is not None]
        await store.commit(redis, settings, partition, prepare(entries))
        # A replica that reclaimed the same entries meanwhile commits nothing more.
        again = await store.commit(redis, settings, partition, prepare(entries))
        assert again.writes.applied == 0 and again.writes.duplicates == len(entries)
    # ... then the process dies: the commit acknowledged the entries with the state, and left
    # the notification in its partition's outbox.
    assert await pending(redis, settings) == 0
    outboxes = [await redis.hlen(keys.outbox_key(p)) for p in range(settings.partitions)]
    assert sum(outboxes) == 1

    survivor = consumer(redis, settings, name="survivor")
    await survivor.drain()
    assert (await read_stats(redis, settings.partitions))["total"] == 31
    assert len(await history_ids(redis, settings.partitions)) == 31
    rows, _ = await notify.list_rows(redis, 10, None)
    assert [(r["title"], r["count"]) for r in rows] == [("ask failed", 1)]
    assert [await redis.hlen(keys.outbox_key(p)) for p in range(settings.partitions)] == [0] * len(
        outboxes
    )


async def test_abandoned_pending_entries_are_reclaimed_and_applied_once(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(claim_idle_ms=100, partitions=2)
    await publish(redis, settings, batch(40))
    dead = consumer(redis, settings, name="dead")
    taken = await dead.take()  # delivered, never applied nor acked
    assert sum(len(v) for v in taken.values()) == 40
    await publish(redis, settings, batch(10))
    survivor = consumer(redis, settings, name="survivor")
    await survivor.drain()
    assert (await read_stats(redis, 2))["total"] == 50
    assert len(await history_ids(redis, 2)) == 50
    for p in range(2):
        info = await redis.xpending(keys.events_stream(p), keys.AGGREGATOR_GROUP)
        assert info["pending"] == 0


async def test_poison_entry_is_dead_lettered_after_max_deliveries(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(claim_idle_ms=100)
    await publish(redis, settings, batch(5))
    poison_id = (await redis.xadd(keys.events_stream(0), {keys.EVENT_FIELD: b"{not json"})).decode()
    await publish(redis, settings, batch(5))
    worker = consumer(redis, settings)
    await worker.drain()
    assert (await read_stats(redis, settings.partitions))["total"] == 10  # never blocked
    letters = await redis.xrange(keys.deadletter_stream(0))
    assert len(letters) == 1
    fields = letters[0][1]
    assert fields[b"id"].decode() == poison_id and fields[b"deliveries"] == b"5"
    assert fields[keys.EVENT_FIELD] == b"{not json" and b"not JSON" in fields[b"error"]
    assert worker.metrics.deadlettered._value.get() == 1
    assert worker.metrics.failed.labels("event")._value.get() == 5
    feed = [
        f
        for _, f in await redis.xrange(keys.feed_stream(0))
        if f[keys.FEED_TYPE_FIELD] == b"deadletter"
    ]
    assert len(feed) == 1
    rows, _ = await notify.list_rows(redis, 10, None)
    assert [r["kind"] for r in rows] == ["deadletter"]
    assert await pending(redis, settings) == 0


async def test_replicas_side_by_side_apply_each_event_once(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partitions=2, consumer_batch=50, claim_idle_ms=200)
    sessions = [f"s{i}" for i in range(7)]
    events = [
        webhook("completion", "completed", metadata={"session_id": sessions[i % 7], "tokens": 2})
        for i in range(600)
    ]
    await publish(redis, settings, events)
    clients = [connect(settings) for _ in range(3)]
    try:
        workers = [consumer(c, settings, name=f"replica-{i}") for i, c in enumerate(clients)]
        await asyncio.gather(*(w.drain(60) for w in workers))
    finally:
        for c in clients:
            await c.aclose()
    stats = await read_stats(redis, 2)
    assert stats["total"] == 600 and stats["tokens"]["completion"] == 1200
    assert len(await history_ids(redis, 2)) == 600
    for sid in sessions:
        run = await read_run(redis, 2, sid)
        assert run is not None and run["events"] == len(range(sessions.index(sid), 600, 7))


async def test_history_is_trimmed_to_its_cap(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(history_max=100 * make_settings().partitions, consumer_batch=40)
    cap = store.history_cap(settings)
    events = batch(300 * settings.partitions)
    ids = await publish(redis, settings, events)
    await consumer(redis, settings).drain()
    for p in range(settings.partitions):
        published = [history.key(i) for i, e in zip(ids, events, strict=True)
                     if keys.partition_for(routing_key(e), settings.partitions) == p]  # fmt: skip
        kept = [m.decode() for m in await redis.zrange(keys.history_ids(p), 0, -1)]
        assert min(len(published), cap) <= len(kept) <= cap * 1.05 + 40  # trimmed past 5 %
        assert kept == sorted(published)[-len(kept) :]  # the newest are kept
        for index in await redis.smembers(keys.history_indexes(p)):
            assert await redis.zcard(index) <= len(kept)


async def test_events_stream_is_trimmed_below_what_the_group_needs(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    await publish(redis, settings, batch(300 * settings.partitions))
    worker = consumer(redis, settings)
    await worker.drain()
    await worker.maintenance()
    for p in range(settings.partitions):  # approximate trim: whole nodes of 100
        assert await redis.xlen(keys.events_stream(p)) <= 101
    await publish(redis, settings, batch(3))
    await worker.drain()
    assert (await read_stats(redis, settings.partitions))["total"] == 300 * settings.partitions + 3


@pytest.mark.parametrize("lands", [False, True])
async def test_a_commit_cut_by_a_redis_error_is_retried_from_our_own_pending_entries(
    redis: Redis,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    lands: bool,
) -> None:
    # claim_idle_ms far away: only the consumer's own recovery can pick the entries up again
    settings = make_settings(claim_idle_ms=600_000, consumer_block_ms=20)
    events = batch(50)
    await publish(redis, settings, events)
    real = scripts.Script.__call__
    cuts = []

    async def flaky(self: scripts.Script, client: Any, keys_: Any, args: Any) -> Any:
        if self is scripts.COMMIT and not cuts:
            cuts.append(1)
            if lands:  # it is applied (and acknowledged), but the reply is lost
                await real(self, client, keys_, args)
            raise RedisConnectionError("connection reset")
        return await real(self, client, keys_, args)

    monkeypatch.setattr(scripts.Script, "__call__", flaky)
    worker = consumer(redis, settings)
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: _settled(redis, settings, len(events)), 20)
    finally:
        worker.stopping.set()
        await running
    assert cuts == [1]
    assert (await read_stats(redis, settings.partitions))["total"] == 50
    assert len(await history_ids(redis, settings.partitions)) == 50


async def _settled(redis: Redis, settings: Settings, total: int) -> bool:
    stats = await read_stats(redis, settings.partitions)
    return stats["total"] == total and await pending(redis, settings) == 0
