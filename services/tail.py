"""`llmwatch tail`: print the newest events of the event stream(s), one JSON line each.

Across partitions, lines come in stream-id order (arrival time; entries of two partitions in
the same millisecond have no defined order). With `--follow`, new events are printed as they
arrive until Ctrl-C (or `stop` is set): on a single Redis one blocking XREAD follows every
partition (each batch merged by id); a Redis Cluster refuses that across slots, so there each
partition is followed by its own blocking XREAD and printed as soon as it arrives (each
partition, hence each run, in order). Each line is the stored DashboardEvent, as is.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

from shared.keys import EVENT_FIELD, events_stream
from shared.redis import Client, per_slot_reads

# Short blocking reads, so that a `stop` request is seen within a second. (Cancelling a blocking
# XREAD mid-read is not reliable with redis-py 8: the cancellation can surface as a TimeoutError
# that the client's Retry then retries.)
FOLLOW_BLOCK_MS = 1000


def _order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _line(fields: dict[Any, Any]) -> str:
    payload = fields.get(EVENT_FIELD) or fields.get(EVENT_FIELD.decode())
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return str(payload)


async def tail(
    redis: Client,
    partitions: int,
    count: int,
    follow: bool,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    out = out or sys.stdout
    streams = [events_stream(p) for p in range(partitions)]
    last: dict[str, bytes | str] = {s: "0-0" for s in streams}
    newest: list[tuple[tuple[int, int], str]] = []
    for stream in streams:
        entries = await redis.xrevrange(stream, count=max(count, 1))
        if entries:
            last[stream] = entries[0][0]
        newest.extend((_order(entry_id), _line(fields)) for entry_id, fields in entries)
    newest.sort(key=lambda item: item[0])
    for _, line in newest[-count:] if count > 0 else []:
        out.write(line + "\n")
    out.flush()
    if not follow:
        return
    if per_slot_reads(redis):  # a cluster refuses one XREAD over streams of several slots
        await asyncio.gather(*(_follow(redis, {s: i}, out, stop) for s, i in last.items()))
    else:
        await _follow(redis, last, out, stop)


async def _follow(
    redis: Client, last: dict[str, bytes | str], out: TextIO, stop: asyncio.Event | None
) -> None:
    while stop is None or not stop.is_set():
        replies = await redis.xread(last, block=FOLLOW_BLOCK_MS, count=1000)  # type: ignore[arg-type]
        batch: list[tuple[tuple[int, int], str]] = []
        for stream, entries in replies or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            batch += [(_order(entry_id), _line(fields)) for entry_id, fields in entries]
            if entries:
                last[name] = entries[-1][0]
        batch.sort(key=lambda item: item[0])
        out.writelines(line + "\n" for _, line in batch)
        out.flush()
