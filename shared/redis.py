"""The Redis client every service shares, built once per process from settings.

`REDIS_URL` names a single server (`redis://`, `rediss://`) or a Redis Cluster
(`redis+cluster://host:port`, `rediss+cluster://…`, or any URL with `LLMWATCH_REDIS_CLUSTER=1`);
a cluster gets redis-py's cluster client, which routes every command by its key's slot. The code
above this module works on both: every atomic step (a MULTI, a Lua script, a multi-key read)
touches keys of one hash tag (`shared/keys.py`), and readers that follow several streams issue
one read per slot where a cluster needs it (`per_slot_reads`).
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, MasterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
        return RedisCluster.from_url(plain_url(target), **options)
    options.update(overrides)
    return Redis.from_url(target, **options)


async def ping(redis: Client) -> bool:
    try:
        return bool(await redis.ping())
    except UNAVAILABLE:
        return False
