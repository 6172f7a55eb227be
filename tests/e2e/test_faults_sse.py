"""Thousands of SSE connects and disconnects (plain, filtered, resumed, snapshot, torn down
abruptly) plus stalled and slow clients against `llmwatch serve stream`: once they are gone,
the process holds as many asyncio tasks and Redis connections as after a warm-up round, and its
memory stays bounded (README, Guarantees: limits)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from shared import keys
from tests import loadgen
from tests.procs import Service, Stack, stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONCURRENCY = 40
BIG = orjson.dumps({"pad": "x" * 65536})


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Stack]:
    yield from stack(tmp_path)


async def one_stream(client: httpx.AsyncClient, base: str, kind: int, cursor: str | None) -> None:
    """Open a stream, read its first bytes (the connect ping), hang up."""
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    path = "/api/stream"
    if kind == 1:
        path, params = "/api/events", {"snapshot": "3"}
    elif kind == 2 and cursor:
        headers["Last-Event-ID"] = cursor  # a replay from Redis first
    elif kind == 3:
        params["events"] = "run.failed,system"
    async with client.stream("GET", base + path, params=params, headers=headers) as response:
        assert response.status_code == 200
        async for _ in response.aiter_raw():
            break


def torn_down(port: int) -> None:
    """A client that sends the request and resets the connection without reading a byte."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def stalled(port: int) -> socket.socket:
    """A client that subscribes and then never reads (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def slow_reader(port: int, done: threading.Event) -> None:
    """Reads 1 KiB every 50 ms (small receive buffer) until told to stop: a client that cannot
    keep up. (After the server drops it, it still reads what the kernel had buffered.)"""
    with stalled(port) as sock:
        sock.settimeout(1)
        while not done.is_set():
            try:
                if not sock.recv(1024):
                    return
            except (ConnectionResetError, TimeoutError):
                return
            time.sleep(0.05)


async def round_of(gateway: Service, redis: Redis, cycles: int, stuck: int) -> None:
    """`cycles` short-lived streams of every kind, with small entries trickling in; then
    `stuck` stalled clients and one slow reader, fed big entries until each is dropped."""
    port = gateway.port
    cursor = await fresh_id(gateway, redis)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def cycle(i: int) -> None:
            async with gate:
                if i % 10 == 9:
                    await asyncio.to_thread(torn_down, port)
                else:
                    await one_stream(client, gateway.url, i % 4, cursor)

        trickling = asyncio.create_task(feed(redis, b"run.created", b"{}", every=0.05))
        try:
            await asyncio.gather(*(cycle(i) for i in range(cycles)))
        finally:
            await loadgen.cancel(trickling)

    dropped = gateway.metric("llmwatch_sse_clients_dropped_total")
    sockets = [stalled(port) for _ in range(stuck)]
    done = threading.Event()
    slow = asyncio.create_task(asyncio.to_thread(slow_reader, port, done))
    pushing = asyncio.create_task(feed(redis, b"run.updated", BIG, every=0.01))
    try:
        # every stalled client and the slow one dropped, while the feed goes on
        await loadgen.until(
            lambda: gateway.metric("llmwatch_sse_clients_dropped_total") == dropped + stuck + 1,
            timeout=30,
        )
    finally:
        done.set()
        await loadgen.cancel(pushing)
        await slow  # returns within a second of `done`
        for sock in sockets:
            sock.close()
    await loadgen.until(lambda: gateway.metric("llmwatch_sse_streams_open") == 0, timeout=20)


async def feed(redis: Redis, name: bytes, data: bytes, *, every: float) -> None:
    while True:
        await redis.xadd(keys.feed_stream(0), {b"t": name, b"d": data})
        await asyncio.sleep(every)


async def footprint(gateway: Service, procs: Stack) -> tuple[float, int, int]:
    await asyncio.sleep(0.5)  # let closed connections' tasks finish
    tasks = await asyncio.to_thread(gateway.metric, "llmwatch_asyncio_tasks")
    return tasks, gateway.rss(), await asyncio.to_thread(procs.redis.client_count)


@pytest.mark.timeout(180)
async def test_thousands_of_streams_and_stalled_clients_leak_nothing(procs: Stack) -> None:
    gateway = procs.service(
        "stream", sse_queue_frames=32, sse_send_timeout_s=0.5, sse_max_per_ip=10_000
    )
    redis = Redis.from_url(procs.redis.url)
    try:
        await round_of(gateway, redis, cycles=300, stuck=5)  # warm-up: pools, caches, allocator
        tasks, rss, clients = await footprint(gateway, procs)
        await round_of(gateway, redis, cycles=2000, stuck=20)
        tasks_after, rss_after, clients_after = await footprint(gateway, procs)
    finally:
        await redis.aclose()
    assert tasks_after <= tasks, (tasks, tasks_after)
    # the pool keeps what peak concurrency needed, never one connection per stream served
    assert clients_after <= max(clients, CONCURRENCY) + 2, (clients, clients_after)
    assert rss_after - rss < 40 * 2**20, (rss, rss_after)  # bounded: no per-connection residue
    assert gateway.metric("llmwatch_sse_streams_open") == 0
    assert "Traceback" not in gateway.log_text()


async def fresh_id(gateway: Service, redis: Redis) -> str:
    """The SSE id of a new entry: a cursor to resume from."""
    url = gateway.url + "/api/stream?events=run.created"
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", url) as response:
        lines = response.aiter_lines()
        while "ping" not in await anext(lines):
            pass
        await redis.xadd(keys.feed_stream(0), {b"t": b"run.created", b"d": b"{}"})
        async for line in lines:
            if line.startswith("id:"):
                return line.removeprefix("id:").strip()
    raise AssertionError("no id received")
