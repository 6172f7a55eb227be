"""The Redis client every service shares, built once per process from settings.

`REDIS_URL` names a single server (`redis://`, `rediss://`) or a Redis Cluster
(`redis+cluster://host:port`, `rediss+cluster://…`, or any URL with `LLMWATCH_REDIS_CLUSTER=1`);
a cluster gets redis-py's cluster client, which routes every command by its key's slot. The code
above this module works on both: every atomic step (a MULTI, a Lua script, a multi-key read)
touches keys of one hash tag (`shared/keys.py`), and readers that follow several streams issue
one read per slot where a cluster needs it (`per_slot_reads`, `run_commands`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import hiredis
from redis.asyncio import Connection, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, DataError, MasterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from shared.settings import Settings

# Either client: they share the command API (RedisCluster routes each command by slot).
Client: TypeAlias = Redis | RedisCluster

# The errors that mean "Redis is down or slow", answered 503 + Retry-After, never 500. On a
# cluster, a shard that lost its master answers CLUSTERDOWN/MASTERDOWN/TRYAGAIN until failover.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    ConnectionError,
    TimeoutError,
    OSError,
)

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(settings: Settings, url: str | None = None) -> bool:
    target = url or settings.redis_url or ""
    return settings.redis_cluster or target.startswith(CLUSTER_SCHEMES)


def plain_url(url: str) -> str:
    """`redis+cluster://h:p` -> `redis://h:p` (what redis-py parses)."""
    for scheme in CLUSTER_SCHEMES:
        if url.startswith(scheme):
            return scheme.replace("+cluster", "") + url[len(scheme) :]
    return url


def per_slot_reads(redis: Client) -> bool:
    """Must a read over several streams be split into one command per stream? (Redis Cluster
    refuses a multi-key command whose keys hash to different slots, even on one node.)"""
    return isinstance(redis, RedisCluster)


# One command, issued on whatever it is given: `lambda r: r.hgetall(key)`. Given a pipeline it
# queues the command; given a client it returns the awaitable reply.
Command: TypeAlias = Callable[[Any], Any]


async def run_commands(redis: Client, commands: Sequence[Command]) -> list[Any]:
    """Replies of independent single-slot commands, in order: one non-transactional pipeline (one
    round trip) on a single Redis; concurrent awaited calls on a cluster, each routed to its
    slot's node. Use it where a cluster pipeline refuses the command (EVAL/EVALSHA, MGET, MSET);
    plain single-key commands can stay in a pipeline, which a cluster splits per node itself.
    Every call is awaited to its end; then the first error, if any, is raised."""
    if not commands:
        return []
    if per_slot_reads(redis):
        replies = await asyncio.gather(*(c(redis) for c in commands), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return list(replies)
    async with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            command(pipe)
        return list(await pipe.execute())


class _Cluster(RedisCluster):
    """redis-py's cluster client, made safe for concurrent use while it (re)learns the slot map.

    redis-py 8.1 picks a command's route *before* initialising: while it has no default node
    (a new client, or one that closed itself after CLUSTERDOWN or repeated MOVED), a keyed
    command is sent to an arbitrary node and answered MOVED; past `reinitialize_steps` MOVED
    replies the client closes every connection, under the feet of the other commands in
    flight (AttributeError on a None writer). Initialising first (under the client's own lock,
    a no-op once done) routes every command by its slot."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        return await super().execute_command(*args, **kwargs)


class _HiredisPacking(Connection):
    """A connection that packs commands with hiredis (C) instead of redis-py's Python packer:
    the same bytes (as redis-py's sync client does), at a fifth of the CPU for a command with
    thousands of arguments (the aggregator's commit script, pipelined XADDs)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # e.g. a bool or None; redis-py calls it a DataError
            args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
            try:
                return [hiredis.pack_command(args)]
            except TypeError as exc:
                raise DataError(str(exc)) from exc


def connect(settings: Settings, *, url: str | None = None, **overrides: Any) -> Client:
    """A pooled asyncio client (hiredis parser, bytes replies). Connections are made lazily."""
    target = url or settings.redis_url
    if not target:
        raise ValueError("no Redis URL: set REDIS_URL or start the embedded server first")
    options: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 10.0,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        "retry_on_error": [RedisConnectionError],
        "max_connections": 256,
        "decode_responses": False,
    }
    if is_cluster(settings, target):
        # A dead master must not stall every request for long: fail fast, answer 503 for its
        # partitions and let the others go on (the cluster client otherwise retries for ~seconds).
        options["retry"] = Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1)
        options.update(overrides)
        return _Cluster.from_url(plain_url(target), **options)
    if HIREDIS_AVAILABLE:
        options["connection_class"] = _HiredisPacking  # rediss:// and unix:// keep theirs
    options.update(overrides)
    return Redis.from_url(target, **options)


async def ping(redis: Client) -> bool:
    try:
        return bool(await redis.ping())
    except UNAVAILABLE:
        return False
