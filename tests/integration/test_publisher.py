"""The group-commit publisher on a real Redis (single and cluster): shared round trips, a
request never split across round trips, timeouts that drop what was not sent, Redis errors and
missing replica acknowledgements that become 503s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio import Connection, RedisCluster
from redis.exceptions import ResponseError

from services.ingest import resp
from services.ingest.lanes import read_replies
from services.ingest.publisher import Entry, Publisher
from shared.errors import Unavailable
from shared.keys import EVENT_FIELD, events_stream, partition_key
from shared.redis import Client, connect
from shared.redis_server import free_port
from shared.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

STREAM = events_stream(0)


def entries(n: int, tag: str = "e", stream: str = STREAM) -> list[Entry]:
    return [(stream, f'{{"id":"{tag}{i}"}}'.encode()) for i in range(n)]


async def queued(publisher: Publisher, count: int) -> None:
    """Wait until the publish() calls queued `count` entries (on a cluster, the first call reads
    the slot table before it can queue)."""
    for _ in range(2000):
        if publisher.queued >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{publisher.queued} of {count} entries queued")


async def server_stats(redis: Client, command: str) -> int:
    """Calls of `command` on every master (INFO commandstats)."""
    if isinstance(redis, RedisCluster):
        nodes = RedisCluster.PRIMARIES
        replies: Any = await redis.info("commandstats", target_nodes=nodes)
        infos = list(replies.values())
    else:
        infos = [await redis.info("commandstats")]
    return sum(int(info.get(f"cmdstat_{command}", {}).get("calls", 0)) for info in infos)


async def test_concurrent_requests_share_one_round_trip(redis: Client) -> None:
    publisher = Publisher(redis, timeout_s=5)
    tasks = [asyncio.create_task(publisher.publish(entries(n, tag=f"r{n}-"))) for n in (1, 3, 5)]
    await queued(publisher, 9)
    assert await publisher.flush_once() == 9  # one pipeline for all three requests
    await asyncio.gather(*tasks)
    assert await publisher.flush_once() == 0
    ids = [f[EVENT_FIELD] for _, f in await redis.xrange(STREAM)]
    assert len(ids) == 9 and ids[:2] == [b'{"id":"r1-0"}', b'{"id":"r3-0"}']


async def test_a_request_is_never_split_across_round_trips(redis: Client) -> None:
    publisher = Publisher(redis, timeout_s=5, max_entries=4)
    tasks = []
    for n in (6, 1, 2, 3):  # one at a time, so that the queue keeps this order
        tasks.append(asyncio.create_task(publisher.publish(entries(n))))
        await queued(publisher, publisher.queued + n)
    assert await publisher.flush_once() == 6  # over the cap alone: sent whole
    assert await publisher.flush_once() == 3  # 1 + 2; the next 3 would pass the cap
    assert await publisher.flush_once() == 3
    await asyncio.gather(*tasks)
    assert await redis.xlen(STREAM) == 12


async def test_a_timed_out_request_is_dropped_before_it_is_sent(redis: Client) -> None:
    publisher = Publisher(redis, timeout_s=0.05)  # no flusher running: nothing is acknowledged
    with pytest.raises(Unavailable) as info:
        await publisher.publish(entries(2))
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    assert await publisher.flush_once() == 0
    assert await redis.xlen(STREAM) == 0


async def test_a_refused_command_fails_only_its_own_request(redis: Client) -> None:
    await redis.set("not-a-stream", "x")
    publisher = Publisher(redis, timeout_s=5)
    good = asyncio.create_task(publisher.publish(entries(2)))
    bad = asyncio.create_task(publisher.publish([*entries(1, "b"), ("not-a-stream", b"{}")]))
    await queued(publisher, 4)
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


async def test_run_drains_the_queue_then_stops(redis: Client) -> None:
    publisher = Publisher(redis, timeout_s=5)
    stopping = asyncio.Event()
    flusher = asyncio.create_task(publisher.run(stopping))
    await asyncio.gather(*(publisher.publish(entries(2, tag=f"t{i}-")) for i in range(50)))
    stopping.set()
    await asyncio.wait_for(flusher, 5)
    assert await redis.xlen(STREAM) == 100


async def test_a_request_over_every_partition_lands_in_each_stream(
    redis: Client, settings: Settings
) -> None:
    streams = [events_stream(p) for p in range(settings.partitions)]
    request = [(stream, b'{"n":%d}' % i) for i, stream in enumerate(streams * 3)]
    publisher = Publisher(redis, timeout_s=5)
    stopping = asyncio.Event()
    flusher = asyncio.create_task(publisher.run(stopping))
    try:
        await publisher.publish(request)
    finally:
        stopping.set()
        await flusher
    for i, stream in enumerate(streams):  # each stream holds its entries, in request order
        got = [f[EVENT_FIELD] for _, f in await redis.xrange(stream)]
        assert got == [b'{"n":%d}' % n for n in (i, i + len(streams), i + 2 * len(streams))]


async def test_replica_acks_wait_for_replicas_and_503_when_there_are_none(
    redis: Client,
) -> None:
    await (
        redis.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
        if isinstance(redis, RedisCluster)
        else redis.config_resetstat()
    )
    stopping = asyncio.Event()
    plain = Publisher(redis, timeout_s=5)  # the default: no WAIT at all
    waiting = Publisher(redis, timeout_s=1, replica_acks=1)
    flushers = [asyncio.create_task(p.run(stopping)) for p in (plain, waiting)]
    try:
        await plain.publish(entries(2, "plain"))
        assert await server_stats(redis, "wait") == 0
        # the test servers have no replica: WAIT 1 answers 0 at its timeout, a prompt 503
        with pytest.raises(Unavailable) as info:
            await asyncio.wait_for(waiting.publish(entries(1, "waited")), 3)
        assert "replica" in info.value.detail and info.value.headers["Retry-After"] == "1"
        assert await server_stats(redis, "wait") == 1
    finally:
        stopping.set()
        await asyncio.gather(*flushers)
    # the master has it, unconfirmed: the client's retry (same event id) is counted once
    assert await redis.xlen(STREAM) == 3


@pytest.mark.parametrize("parser", [_AsyncHiredisParser, _AsyncRESP2Parser])
async def test_replies_are_read_in_order_with_refusals_returned(redis: Client, parser: Any) -> None:
    """`read_replies` takes them from hiredis's reader, or one by one with another parser."""
    wrong = partition_key(0, "not-a-stream")  # same slot as STREAM, so the same node
    await redis.set(wrong, "x")
    if isinstance(redis, RedisCluster):
        node = redis.get_node_from_key(STREAM)
        host, port = node.host, node.port
    else:
        host, port = (redis.connection_pool.connection_kwargs[k] for k in ("host", "port"))
    conn = Connection(host=host, port=port, parser_class=parser)
    try:
        packed = resp.pack_xadds({}, EVENT_FIELD, [(STREAM, b"1"), (wrong, b"2"), (STREAM, b"3")])
        await conn.send_packed_command(packed)
        first, refused, third = await read_replies(conn, 3)
    finally:
        await conn.disconnect()
    assert isinstance(refused, ResponseError) and "WRONGTYPE" in str(refused)
    assert [first, third] == [i for i, _ in await redis.xrange(STREAM)]
