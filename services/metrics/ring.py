"""The sampler's writes to Redis (slot `{system}`): each sample into the ring of the last 32 and
onto the SSE feed in one MULTI; the `config.stale` flag flipped and announced atomically.

Layout and reads: `shared/system.py` (the gateway reads the same keys).
"""

from __future__ import annotations

from typing import Any

import orjson

from shared import keys, system
from shared.redis import Client

# Flip the flag and announce the flip in one step, so replicas racing on the same change
# publish it once, and a repeat of the current value publishes nothing.
_FLIP_LUA = """
local old = redis.call('GET', KEYS[1]) or '0'
if old == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 't', 'config.stale', 'd', ARGV[2])
return 1
"""


async def publish_sample(
    redis: Client, sample: dict[str, Any], uptime: float, cpu_cores: int
) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(
            keys.SYSTEM_SAMPLES,
            {system.RECORD_FIELD: system.record(sample, uptime, cpu_cores)},
            maxlen=system.RING_SIZE,
            approximate=False,
        )
        pipe.xadd(
            keys.SYSTEM_FEED,
            {
                keys.FEED_TYPE_FIELD: b"system",
                keys.FEED_DATA_FIELD: orjson.dumps({"sample": sample, "uptime": uptime}),
            },
            maxlen=keys.SYSTEM_FEED_MAXLEN,
            approximate=True,
        )
        await pipe.execute()


async def set_stale(redis: Client, stale: bool) -> bool:
    """Set the flag; True when it flipped (and `config.stale {stale}` went onto the feed)."""
    script = redis.register_script(_FLIP_LUA)
    flipped = await script(
        keys=[keys.SYSTEM_CONFIG_STALE, keys.SYSTEM_FEED],
        args=["1" if stale else "0", orjson.dumps({"stale": stale}), keys.SYSTEM_FEED_MAXLEN],
    )
    return bool(flipped)
