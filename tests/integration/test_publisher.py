"""The group-commit publisher on a real Redis: shared round trips, all-or-nothing per request,
timeouts that drop what was not sent, and Redis errors that become 503s."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from services.ingest.publisher import Entry, Publisher
from shared.errors import Unavailable
from shared.keys import EVENT_FIELD, events_stream
from shared.redis import connect
from shared.redis_server import free_port
from shared.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

STREAM = events_stream(0)


def entries(n: int, tag: str = "e", stream: str = STREAM) -> list[Entry]:
    return [(stream, f'{{"id":"{tag}{i}"}}'.encode()) for i in range(n)]


async def queued(*calls: asyncio.Task[None]) -> None:
    """Let the publish() tasks run up to their await: they are then in the queue."""
    for _ in calls:
        await asyncio.sleep(0)


async def test_concurrent_requests_share_one_round_trip(redis: Redis) -> None:
    publisher = Publisher(redis, timeout_s=5)
    tasks = [asyncio.create_task(publisher.publish(entries(n, tag=f"r{n}-"))) for n in (1, 3, 5)]
    await queued(*tasks)
    assert await publisher.flush_once() == 9  # one pipeline for all three requests
    await asyncio.gather(*tasks)
    assert await publisher.flush_once() == 0
    ids = [f[EVENT_FIELD] for _, f in await redis.xrange(STREAM)]
    assert len(ids) == 9 and ids[:2] == [b'{"id":"r1-0"}', b'{"id":"r3-0"}']


async def test_a_request_is_never_split_across_round_trips(redis: Redis) -> None:
    publisher = Publisher(redis, timeout_s=5, max_entries=4)
    tasks = [asyncio.create_task(publisher.publish(entries(n))) for n in (6, 1, 2, 3)]
    await queued(*tasks)
    assert await publisher.flush_once() == 6  # over the cap alone: sent whole
    assert await publisher.flush_once() == 3  # 1 + 2; the next 3 would pass the cap
    assert await publisher.flush_once() == 3
    await asyncio.gather(*tasks)
    assert await redis.xlen(STREAM) == 12


async def test_a_timed_out_request_is_dropped_before_it_is_sent(redis: Redis) -> None:
    publisher = Publisher(redis, timeout_s=0.05)  # no flusher running: nothing is acknowledged
    with pytest.raises(Unavailable) as info:
        await publisher.publish(entries(2))
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    assert await publisher.flush_once() == 0
    assert await redis.xlen(STREAM) == 0


async def test_a_refused_command_fails_only_its_own_request(redis: Redis) -> None:
    await redis.set("not-a-stream", "x")
    publisher = Publisher(redis, timeout_s=5)
    good = asyncio.create_task(publisher.publish(entries(2)))
    bad = asyncio.create_task(publisher.publish([*entries(1, "b"), ("not-a-stream", b"{}")]))
    await queued(good, bad)
    assert await publisher.flush_once() == 4
    await good
    with pytest.raises(Unavailable):
        await bad
    # non-transactional: the bad request's other XADD landed, and its client retries (same ids)
    assert await redis.xlen(STREAM) == 3


async def test_unreachable_redis_is_a_prompt_503(tmp_path) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", data_dir=tmp_path)
    client = connect(settings)
    publisher = Publisher(client, timeout_s=10)
    stopping = asyncio.Event()
    flusher = asyncio.create_task(publisher.run(stopping))
    try:
        with pytest.raises(Unavailable):
            await publisher.publish(entries(1))
    finally:
        stopping.set()
        await flusher
        await client.aclose()


async def test_run_drains_the_queue_then_stops(redis: Redis) -> None:
    publisher = Publisher(redis, timeout_s=5)
    stopping = asyncio.Event()
    flusher = asyncio.create_task(publisher.run(stopping))
    await asyncio.gather(*(publisher.publish(entries(2, tag=f"t{i}-")) for i in range(50)))
    stopping.set()
    await asyncio.wait_for(flusher, 5)
    assert await redis.xlen(STREAM) == 100
