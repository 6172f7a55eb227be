"""The aggregator on a 3-master Redis Cluster whose one master is killed (no replica): the
partitions of the other shards keep being applied; the dead shard's partitions wait and resume
when it is back (same port, same data), and everything converges exactly once."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from services.stream.reads import read_stats
from shared import keys, notify
from shared.redis import Client, connect
from shared.redis_server import EmbeddedCluster
from shared.settings import Settings
from tests.aggregator_support import consumer, publish, webhook
from tests.loadgen import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 6


def sessions_by_partition() -> dict[int, list[str]]:
    """A few session ids routed to each partition."""
    out: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while min(len(v) for v in out.values()) < 3:
        sid = f"session-{i}"
        out[keys.partition_for(sid, PARTITIONS)].append(sid)
        i += 1
    return out


def events_for(partitions: list[int], n: int, tag: str) -> list[dict[str, Any]]:
    """n events on each partition (a failed one among them), in sessions of that partition."""
    sids = sessions_by_partition()
    out = []
    for p in partitions:
        for i in range(n):
            status = "failed" if i == 0 else "completed"
            meta = {"session_id": sids[p][i % 3], "tokens": 2, "tag": tag}
            out.append(webhook("completion", status, command="job", metadata=meta))
    return out


async def applied(redis: Client, partition: int) -> int:
    return int(await redis.hget(keys.stats_key(partition), "total") or 0)


@pytest.mark.timeout(120)
async def test_a_dead_shard_stops_only_its_own_partitions(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path / "cluster", masters=3, appendfsync="always").start()
    settings = Settings(
        redis_url=cluster.url,
        partitions=PARTITIONS,
        consumer_block_ms=50,
        claim_idle_ms=500,
        data_dir=tmp_path / "data",
    )
    redis = connect(settings)
    worker = consumer(redis, settings)
    running = asyncio.create_task(worker.run())
    try:
        victim = cluster.primaries[1]
        await redis.initialize()  # type: ignore[union-attr]  # the slot map, for node_of
        node_of = {p: redis.get_node_from_key(keys.events_stream(p)) for p in range(PARTITIONS)}
        dead = [p for p, node in node_of.items() if node.port == victim.port]
        alive = [p for p in range(PARTITIONS) if p not in dead]
        assert dead and alive  # the partition tags spread over every shard

        before = events_for(list(range(PARTITIONS)), 20, "before")
        await publish(redis, settings, before)
        await until(lambda: _all_applied(redis, list(range(PARTITIONS)), 20), 20)

        racing = events_for(dead, 40, "racing")  # some still unapplied when the shard dies
        await publish(redis, settings, racing)
        victim.kill()
        during = events_for(alive, 30, "during")
        await publish(redis, settings, during)  # only the live shards take writes now
        await until(lambda: _all_applied(redis, alive, 50), 20)
        assert not running.done()

        victim.start()  # same port, same data directory: the node rejoins with its slots
        after = events_for(list(range(PARTITIONS)), 10, "after")
        await _publish_when_back(redis, settings, after)
        expected = {p: 30 + (30 if p in alive else 40) for p in range(PARTITIONS)}
        await until(lambda: _converged(redis, expected), 30)
        await _check_exactly_once(redis, before + racing + during + after)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(running, 30)
        await redis.aclose()
        cluster.stop()
    gc.collect()  # a leaked connection would warn here, inside the test


async def _all_applied(redis: Client, partitions: list[int], each: int) -> bool:
    return all([await applied(redis, p) >= each for p in partitions])


async def _publish_when_back(
    redis: Client, settings: Settings, events: list[dict[str, Any]]
) -> None:
    for _ in range(100):
        try:
            await publish(redis, settings, events)
            return
        except Exception:  # noqa: BLE001 - the shard is still rejoining: as ingest, retry
            await asyncio.sleep(0.2)
    raise AssertionError("the restarted shard never took writes again")


async def _converged(redis: Client, expected: dict[int, int]) -> bool:
    try:
        for p, n in expected.items():
            if await applied(redis, p) != n:
                return False
            info = await redis.xpending(keys.events_stream(p), keys.AGGREGATOR_GROUP)
            if int(info["pending"]) or await redis.hlen(keys.outbox_key(p)):
                return False
    except Exception:  # noqa: BLE001 - a shard still rejoining: not converged yet
        return False
    return True


async def _check_exactly_once(redis: Client, events: list[dict[str, Any]]) -> None:
    stats = await read_stats(redis, PARTITIONS)
    assert stats["total"] == len(events)
    assert stats["tokens"]["completion"] == 2 * len(events)
    assert stats["by_status"] == {
        "completed": sum(e["status"] == "completed" for e in events),
        "failed": sum(e["status"] == "failed" for e in events),
    }
    for p in range(PARTITIONS):
        members = await redis.zcard(keys.history_ids(p))
        assert members == int(await redis.hget(keys.stats_key(p), "total") or 0)
    rows, _ = await notify.list_rows(redis, 10, None)
    assert [(r["title"], r["count"]) for r in rows] == [
        ("job failed", sum(e["status"] == "failed" for e in events))
    ]
