"""System samples in Redis (slot `{system}`): the layout the sampler writes and the gateway reads.

- `keys.SYSTEM_SAMPLES`: stream trimmed to exactly `RING_SIZE` entries, field `d` = JSON
  `{"sample": {ts, cpu, mem, mem_used, mem_total}, "uptime": s, "cpu_cores": n}`; oldest first.
- `keys.SYSTEM_FEED`: the SSE feed (`t`/`d`): `system` `{sample, uptime}`, `config.stale` `{stale}`.
- `keys.SYSTEM_CONFIG_STALE`: `1` while llmwatch.toml differs from what the sampler loaded.

Because the ring lives in Redis, every gateway replica answers `/api/system/history` the same.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from shared import keys

RING_SIZE = 32
RECORD_FIELD = b"d"


def record(sample: dict[str, Any], uptime: float, cpu_cores: int) -> bytes:
    return orjson.dumps({"sample": sample, "uptime": uptime, "cpu_cores": cpu_cores})


async def latest(redis: Redis) -> dict[str, Any] | None:
    """The newest record, or None before the first sample."""
    rows = await redis.xrevrange(keys.SYSTEM_SAMPLES, "+", "-", count=1)
    return _decode(rows[0][1]) if rows else None


async def history(redis: Redis) -> list[dict[str, Any]]:
    """The ring's samples, oldest first."""
    rows = await redis.xrange(keys.SYSTEM_SAMPLES, "-", "+", count=RING_SIZE)
    records = (_decode(fields) for _, fields in rows)
    return [r["sample"] for r in records if r is not None and isinstance(r.get("sample"), dict)]


async def config_stale(redis: Redis) -> bool:
    return await redis.get(keys.SYSTEM_CONFIG_STALE) == b"1"


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any] | None:
    raw = fields.get(RECORD_FIELD)
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
