"""A Redis Cluster master killed (kill -9) under ingest load.

Without a replica: requests whose events go to the dead master's partitions get 503 +
Retry-After, every other request keeps getting 200 all along, a request spanning partitions is
refused whole (nothing of it published), and once the master is back ingest recovers by itself.
With a replica and `LLMWATCH_REPLICA_ACKS=1`: the replica takes over, and every event ingest
acknowledged (200) is in the streams exactly once, counted by event id.

Ingest runs in-process on the cluster (the fault is in Redis); each request is sent once (no
retry), with fresh event ids, so what a 200 promised can be checked event by event.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import redis as sync_redis

from services.targets import create_app
from shared.keys import EVENT_FIELD, events_stream, partition_for
from shared.redis_server import EmbeddedCluster, EmbeddedRedis
from shared.settings import Settings
from tests.helpers import app_client
from tests.loadgen import until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARTITIONS = 6  # two per master
PATH = "/api/open-wrapper"


@dataclass
class Shot:
    """One request: the partition its events go to (-1: all of them), when, and the answer."""

    partition: int
    ids: list[str]
    started: float
    ended: float
    status: int
    retry_after: str | None
    problem: bool  # answered application/problem+json


class Traffic:
    """Requests to chosen partitions, each sent once, and what came back."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.shots: list[Shot] = []
        self.sessions: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
        i = 0
        while min(len(s) for s in self.sessions.values()) < 20:  # sessions of each partition
            self.sessions[partition_for(f"sess-{i}", PARTITIONS)].append(f"sess-{i}")
            i += 1

    async def post(self, partitions: list[int], rng: random.Random) -> Shot:
        events = []
        for p in partitions:
            session = rng.choice(self.sessions[p])
            events += [
                {"id": str(uuid.uuid4()), "event_type": "request", "command": "ask",
                 "status": "start", "session_id": session}
                for _ in range(2)
            ]  # fmt: skip
        started = time.monotonic()
        response = await self.client.post(PATH, content=orjson.dumps(events))
        shot = Shot(
            partitions[0] if len(partitions) == 1 else -1,
            [e["id"] for e in events],
            started,
            time.monotonic(),
            response.status_code,
            response.headers.get("retry-after"),
            response.headers.get("content-type", "").startswith("application/problem+json"),
        )
        self.shots.append(shot)
        return shot

    async def load(self, stop: asyncio.Event, workers: int = 6) -> None:
        async def worker(n: int) -> None:
            rng = random.Random(n)
            while not stop.is_set():
                shot = await self.post([rng.randrange(PARTITIONS)], rng)
                if shot.status != 200:
                    await asyncio.sleep(0.005)  # a refused shard answers at once: do not spin

        await asyncio.gather(*(worker(n) for n in range(workers)))

    @contextlib.asynccontextmanager
    async def loading(self) -> AsyncIterator[None]:
        """`load` in the background, once it has had its first answers, until the block ends."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.load(stop))
        try:
            await until(lambda: len(self.shots) > 50, timeout=10, every=0.02)
            yield
        finally:
            stop.set()
            await task

    def accepted_since(self, partitions: set[int], since: float) -> bool:
        """Has a request to one of `partitions`, sent after `since`, been acknowledged?"""
        return any(
            s.partition in partitions and s.status == 200 and s.started > since for s in self.shots
        )

    def acked(self) -> list[str]:
        return [i for shot in self.shots if shot.status == 200 for i in shot.ids]


def owner_ports(url: str) -> dict[int, int]:
    """Partition -> port of the master that holds it."""
    client = sync_redis.RedisCluster.from_url(url.replace("+cluster", "", 1))
    try:
        return {p: client.get_node_from_key(events_stream(p)).port for p in range(PARTITIONS)}
    finally:
        client.close()


def first_master_and_its_partitions(
    cluster: EmbeddedCluster,
) -> tuple[EmbeddedRedis, set[int], set[int]]:
    """The first master (to kill), the partitions it holds, and the others."""
    owners = owner_ports(cluster.url)
    doomed = cluster.primaries[0]
    dead = {p for p, port in owners.items() if port == doomed.port}
    return doomed, dead, set(range(PARTITIONS)) - dead


def stored_ids(url: str) -> Counter[str]:
    """Every event id in the partitions' streams, with its count."""
    client = sync_redis.RedisCluster.from_url(url.replace("+cluster", "", 1))
    try:
        found: Counter[str] = Counter()
        for p in range(PARTITIONS):
            for _, fields in client.xrange(events_stream(p)):
                found[orjson.loads(fields[EVENT_FIELD])["id"]] += 1
        return found
    finally:
        client.close()


def settings_for(cluster: EmbeddedCluster, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        redis_url=cluster.url,
        data_dir=tmp_path / "data",
        partitions=PARTITIONS,
        publish_timeout_ms=1000,
        stream_max_backlog=0,
        **overrides,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    started = EmbeddedCluster(tmp_path / "cluster", masters=3).start()
    yield started
    started.stop()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    started = EmbeddedCluster(tmp_path / "replicated", masters=3, replicas=1).start()
    yield started
    started.stop()


@pytest.mark.timeout(60)
async def test_a_dead_master_refuses_only_its_partitions_and_ingest_recovers(
    cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    doomed, dead, live = first_master_and_its_partitions(cluster)
    assert dead and live
    async with app_client(create_app(settings_for(cluster, tmp_path), "ingest")) as client:
        traffic = Traffic(client)
        async with traffic.loading():
            await asyncio.to_thread(doomed.kill)
            killed_at = time.monotonic()
            # every shard's partitions keep being asked; the dead ones answer 503
            await until(
                lambda: any(s.partition in dead and s.status == 503 for s in traffic.shots),
                timeout=5, every=0.02,
            )  # fmt: skip
            spanning = await traffic.post(list(range(PARTITIONS)), random.Random(99))
            await asyncio.sleep(1.0)
            restart_at = time.monotonic()
            await asyncio.to_thread(doomed.start)
            # back by itself: a request to a once-dead partition is acknowledged again
            await until(lambda: traffic.accepted_since(dead, restart_at), timeout=15, every=0.05)
            recovered_at = time.monotonic()
            await asyncio.sleep(0.5)

    during = [s for s in traffic.shots if s.started > killed_at and s.ended < restart_at]
    assert {s.status for s in during if s.partition in live} == {200}, "a healthy shard failed"
    refused = [s for s in during if s.partition in dead]
    assert refused and {s.status for s in refused} == {503}
    assert all(s.problem and s.retry_after and int(s.retry_after) >= 1 for s in refused)
    after = [s for s in traffic.shots if s.started > recovered_at]
    assert after and {s.status for s in after} == {200}

    assert spanning.status == 503 and spanning.problem
    found = stored_ids(cluster.url)
    assert not set(spanning.ids) & set(found), "a refused request was partly published"
    acked = traffic.acked()
    assert all(found[i] == 1 for i in acked), "an acknowledged event is missing or doubled"


@pytest.mark.timeout(60)
async def test_failover_loses_no_event_acknowledged_with_replica_acks(
    replicated: EmbeddedCluster, tmp_path: Path
) -> None:
    doomed, dead, live = first_master_and_its_partitions(replicated)
    settings = settings_for(replicated, tmp_path, replica_acks=1)
    async with app_client(create_app(settings, "ingest")) as client:
        traffic = Traffic(client)
        async with traffic.loading():
            await asyncio.to_thread(doomed.kill)
            killed_at = time.monotonic()
            # the replica takes over; its partitions answer again once it has a replica of
            # its own to confirm writes: the old master, restarted, rejoins as that replica
            await until(lambda: promoted(replicated, doomed.port), timeout=15, every=0.1)
            await asyncio.to_thread(doomed.start)
            rejoined_at = time.monotonic()
            await until(lambda: traffic.accepted_since(dead, rejoined_at), timeout=15, every=0.05)
            await asyncio.sleep(0.3)

    during = [s for s in traffic.shots if s.started > killed_at and s.ended < rejoined_at]
    assert {s.status for s in during if s.partition in live} == {200}, "a healthy shard failed"
    assert any(s.status == 503 for s in during if s.partition in dead)
    acked = traffic.acked()
    found = stored_ids(replicated.url)
    lost = [i for i in acked if found[i] != 1]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events missing or doubled"


def promoted(cluster: EmbeddedCluster, dead_port: int) -> bool:
    """Has a replica taken over the dead master's slots, as every live node sees it?"""
    for node in cluster.nodes:
        if node.port == dead_port:
            continue
        client = sync_redis.Redis(port=node.port)
        try:
            slots = client.cluster("slots")
        finally:
            client.close()
        if any(int(row[2][1]) == dead_port for row in slots):
            return False
    return True
