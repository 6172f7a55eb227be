"""Rate limits per client IP and per LLMonitor app, shared by every ingest replica.

A fixed one-second window counted in Redis (INCR + EXPIRE in one pipeline), so N replicas
enforce one limit together. It costs a round trip only when a limit is configured
(`LLMWATCH_RATE_LIMIT_PER_IP`, `LLMWATCH_RATE_LIMIT_PER_APP`, requests per second; 0 = off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from shared.errors import TooManyRequests, Unavailable
from shared.keys import rate_limit_key
from shared.redis import Client

WINDOW_TTL_S = 2


class RateLimiter:
    def __init__(
        self, redis: Client, *, per_ip: int, per_app: int, timeout_s: float, retry_after_s: int = 1
    ) -> None:
        self._redis = redis
        self.per_ip = per_ip
        self.per_app = per_app
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s

    async def check_ip(self, ip: str) -> None:
        if self.per_ip:
            await self._check("ip", [ip], self.per_ip)

    async def check_apps(self, apps: Iterable[str]) -> None:
        if self.per_app:
            await self._check("app", sorted(set(apps)), self.per_app)

    async def _check(self, scope: str, idents: list[str], limit: int) -> None:
        if not idents:
            return
        window = int(time.time())
        pipe = self._redis.pipeline(transaction=False)
        for ident in idents:
            key = rate_limit_key(scope, ident, window)
            pipe.incr(key)
            pipe.expire(key, WINDOW_TTL_S)
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await pipe.execute()
        except Exception:  # noqa: BLE001 - cannot count: refuse as retryable, never 500
            raise Unavailable(
                "rate limiter unavailable, retry shortly", retry_after=self._retry_after_s
            ) from None
        for ident, count in zip(idents, replies[::2], strict=True):
            if int(count) > limit:
                who = "client" if scope == "ip" else f"app {ident}"
                raise TooManyRequests(
                    f"rate limit of {limit} requests/s exceeded for this {who}",
                    retry_after=max(1, window + 1 - int(time.time())),
                )
