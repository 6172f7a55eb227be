"""The Redis client every service shares, built once per process from settings."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import Settings

# The errors that mean "Redis is down or slow", answered 503 + Retry-After, never 500.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


def connect(settings: Settings, *, url: str | None = None, **overrides: Any) -> Redis:
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
    options.update(overrides)
    return Redis.from_url(target, **options)


async def ping(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except UNAVAILABLE:
        return False
