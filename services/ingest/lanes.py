"""Where the publisher's XADDs go: one lane per Redis master.

A single Redis is one lane. On a Redis Cluster each master is a lane, found from a stream's hash
slot through the cluster client's slot table; a lane sends its own round trips on a connection
of its own node, so a dead or slow master holds up only the requests with an event for it.
The publisher talks to the connections directly (pack, send, read replies) rather than through
redis-py's cluster pipeline: that pipeline retries a failed node by closing every connection of
every node (`RedisCluster.aclose`), in-flight ones included, which would fail the healthy
shards' round trips too and could XADD their entries twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from shared.redis import Client

try:  # redis-py's own hiredis parser (private names: checked, with a fallback)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser as _HiredisParser
except ImportError:  # pragma: no cover - another redis-py layout: read one by one
    _HiredisParser = None  # type: ignore[assignment,misc]
    _NOT_ENOUGH_DATA = None

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 0.25  # at most this often, the cluster's slot table is read again
_FOREVER = math.inf  # read_response: no per-reply timer (the publisher's round trip has one)


async def read_replies(conn: AbstractConnection, count: int) -> list[Any]:
    """The next `count` replies on `conn`; a refused command's reply is its exception, returned,
    not raised. With redis-py's hiredis parser (the pinned setup) the replies are taken from its
    reader in one loop, about a microsecond cheaper per reply than `read_response` (which
    re-checks the connection and builds an error label each time); otherwise one by one."""
    parser = getattr(conn, "_parser", None)
    if _HiredisParser is None or not isinstance(parser, _HiredisParser):
        return await _one_by_one(conn, count)
    reader, stream = parser._reader, parser._stream
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is _NOT_ENOUGH_DATA:
            data = await stream.read(65536)
            if not data:
                raise ConnectionError("connection closed by the server")
            reader.feed(data)
            continue
        if isinstance(reply, ConnectionError):  # e.g. a LOADING reply: the server is not ready
            raise reply
        replies.append(reply)
    return replies


async def _one_by_one(conn: AbstractConnection, count: int) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await conn.read_response(timeout=_FOREVER))
        except ResponseError as exc:  # refused (OOM, WRONGTYPE, MOVED...): this command only
            replies.append(exc)
    return replies


class PoolLink:
    """A single Redis: one connection, held from the client's pool while the publisher runs."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._conn: AbstractConnection | None = None

    async def acquire(self) -> AbstractConnection:
        if self._conn is None:
            self._conn = await self._pool.get_connection()
        return self._conn

    async def release(self, conn: AbstractConnection) -> None:
        pass  # kept for the next round trip (a broken one reconnects when next used)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


class NodeLink:
    """A cluster master: a connection of its node's pool per round trip, as redis-py's own
    commands take one (so a topology refresh that marks them for reconnect is honoured)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def acquire(self) -> AbstractConnection:
        conn = self.node.acquire_connection()
        await self.node.disconnect_if_needed(conn)
        return conn

    async def release(self, conn: AbstractConnection) -> None:
        try:
            await self.node.disconnect_if_needed(conn)
        finally:
            self.node.release(conn)

    async def close(self) -> None:
        """Nothing to close: the node's pool belongs to the cluster client, closed with it."""


Link = PoolLink | NodeLink


class Lane:
    """One master's queue of parts (a request's entries for that master) and its state."""

    __slots__ = ("down_until", "failing", "link", "name", "queue", "task", "wake")

    def __init__(self, name: str, link: Link) -> None:
        self.name = name
        self.link = link
        self.queue: deque[Any] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.down_until = 0.0  # monotonic: until then, a request spanning lanes skips this one
        self.failing = False  # the last round trip failed (for logging transitions only)

    def is_down(self, now: float) -> bool:
        return self.down_until > now

    def succeeded(self) -> None:
        self.down_until = 0.0
        if self.failing:
            self.failing = False
            log.info("redis %s answers again", self.name)

    def failed(self, exc: BaseException, hold_s: float) -> None:
        self.down_until = time.monotonic() + hold_s
        if not self.failing:
            self.failing = True
            log.warning("publishing to redis %s failed: %r", self.name, exc)


class Router:
    """Stream name → lane. `single` is set on a single Redis, where every stream shares it."""

    def __init__(self, redis: Client, on_new_lane: Callable[[Lane], None]) -> None:
        self._redis = redis
        self._on_new_lane = on_new_lane
        self.single: Lane | None = None
        self._lanes: dict[str, Lane] = {}
        self._routes: dict[str, Lane] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        if not isinstance(redis, RedisCluster):
            where = redis.connection_pool.connection_kwargs
            name = f"{where.get('host', where.get('path', 'redis'))}:{where.get('port', '')}"
            self.single = Lane(name.rstrip(":"), PoolLink(redis))
            self._lanes[self.single.name] = self.single

    @property
    def lanes(self) -> list[Lane]:
        return list(self._lanes.values())

    def route(self, stream: str) -> Lane:
        """The lane of a stream's master (cluster). Raises SlotNotCoveredError (a RedisError)
        while the slot table is unknown: `await ensure_topology()` first."""
        lane = self._routes.get(stream)
        if lane is not None:
            return lane
        assert isinstance(self._redis, RedisCluster)
        node = self._redis.get_node_from_key(stream)
        if node is None:  # typing: a primary is always there once the table is known
            raise ConnectionError(f"no master for {stream}")
        # Keyed by the node object too: a topology refresh may bring a new object under an old
        # name, and the lane of the old one must still be there to finish (and be stopped).
        key = f"{node.name}#{id(node)}"
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(node.name, NodeLink(node))
            self._on_new_lane(lane)
        self._routes[stream] = lane
        return lane

    async def ensure_topology(self) -> None:
        """Read the cluster's slot table if the client has none yet (no-op once it has)."""
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()

    def refresh_soon(self) -> None:
        """Read the slot table again in the background (after a failure or a redirection: a
        failover moved the slots to a replica), at most every REFRESH_EVERY_S."""
        if not isinstance(self._redis, RedisCluster):
            return
        if self._refresh is not None and not self._refresh.done():
            return
        if time.monotonic() - self._refreshed_at < REFRESH_EVERY_S:
            return
        self._refreshed_at = time.monotonic()
        self._refresh = asyncio.create_task(self._reload(self._redis), name="ingest:topology")

    async def _reload(self, redis: RedisCluster) -> None:
        try:
            # The nodes manager alone: RedisCluster.initialize() is a no-op once initialised,
            # and aclose() would drop every connection, in-flight ones included.
            await redis.nodes_manager.initialize()
        except Exception as exc:  # noqa: BLE001 - no node answered: the next failure retries
            log.debug("cluster topology refresh failed: %r", exc)
            return
        self._routes.clear()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(BaseException):
                await self._refresh
        for lane in self._lanes.values():
            await lane.link.close()
