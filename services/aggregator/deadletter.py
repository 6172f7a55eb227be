"""Dead letters: an entry that failed `max_deliveries` times moves to `deadletter_stream(N)`.

The move is one MULTI in the partition's slot: XADD to the dead-letter stream, a `deadletter`
feed entry, the bell notification into the partition's outbox, and XACK of the original — so a
crash leaves the entry either still pending (and retried) or moved, never both or neither.
Dead-letter entries keep the original bytes (`e`) for inspection or replay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from shared import keys
from shared.notifications import Occurrence
from shared.redis import Client
from shared.settings import Settings

DEADLETTER_MAX = 100_000  # entries kept per partition (approximate trim)


@dataclass(frozen=True)
class Letter:
    stream_id: str
    raw: bytes | None  # None: the entry was trimmed away before it could be read again
    reason: str
    deliveries: int


def occurrence(partition: int, letter: Letter) -> Occurrence:
    return Occurrence(
        kind="deadletter",
        severity="error",
        task_name="aggregator",
        end_reason="dead_letter",
        title="Event moved to the dead-letter stream",
        body=f"partition {partition} entry {letter.stream_id} failed {letter.deliveries} "
        f"time(s): {letter.reason}",
        run_id=None,
        occurred_at=time.time(),
        dedup_id=f"deadletter:{partition}:{letter.stream_id}",
    )


async def move(
    redis: Client, settings: Settings, partition: int, letters: list[Letter], consumer: str
) -> list[Occurrence]:
    """Dead-letter and acknowledge `letters`; returns the notifications to raise."""
    if not letters:
        return []
    now = time.time()
    occurrences = [occurrence(partition, letter) for letter in letters]
    async with redis.pipeline(transaction=True) as pipe:
        for letter in letters:
            fields: dict[str, Any] = {
                "id": letter.stream_id,
                "error": letter.reason[:2000],
                "deliveries": letter.deliveries,
                "consumer": consumer,
                "at": f"{now:.3f}",
            }
            if letter.raw is not None:
                fields[keys.EVENT_FIELD] = letter.raw
            pipe.xadd(
                keys.deadletter_stream(partition), fields, maxlen=DEADLETTER_MAX, approximate=True
            )
            payload = {
                "id": letter.stream_id,
                "partition": partition,
                "error": letter.reason[:2000],
                "deliveries": letter.deliveries,
            }
            pipe.xadd(
                keys.feed_stream(partition),
                {keys.FEED_TYPE_FIELD: "deadletter", keys.FEED_DATA_FIELD: orjson.dumps(payload)},
                maxlen=settings.feed_max,
                approximate=True,
            )
        pipe.hset(
            keys.outbox_key(partition),
            mapping={o.dedup_id: orjson.dumps(o.__dict__) for o in occurrences},
        )
        pipe.xack(
            keys.events_stream(partition), keys.AGGREGATOR_GROUP, *[x.stream_id for x in letters]
        )
        await pipe.execute()
    return occurrences
