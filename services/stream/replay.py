"""Reading the past for one client: the replay after a cursor, and the `?snapshot=N` history.

Replay reads every feed stream with XRANGE from the client's per-stream progress (`after`) up to
the hub's watermark, a page per stream at a time, and yields entries in canonical order. The
first page is read in one MULTI with XINFO STREAM of every stream: if entries the client has not
seen were trimmed away (retention), `Expired` is raised and the client gets `reset` instead.

The snapshot reads the N newest history events of every partition together with the last id of
that partition's feed, in one MULTI per partition: the aggregator writes an event's history row
and its feed entry in the same transaction, so "these events, then the feed after these ids" has
neither a gap nor a repeat.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from services.stream import feeds
from services.stream.feeds import Entry
from shared import cursor, history, keys
from shared.cursor import Position, StreamId
from shared.settings import Settings

PAGE = 500
SNAPSHOT_MAX = 5000


class Expired(Exception):
    """Entries after the client's cursor are gone (trimmed): it must reload its snapshots."""


def caps(settings: Settings) -> list[int]:
    """MAXLEN of every feed stream (partitions, notifications, system), for the Redis 6.2 check."""
    return [settings.feed_max] * settings.partitions + [settings.feed_max, keys.SYSTEM_FEED_MAXLEN]


def _info_lost(info: Any, start: StreamId, cap: int) -> bool:
    if isinstance(info, Exception) or not info:
        return False  # no such stream: nothing was ever there to lose
    deleted = info.get("max-deleted-entry-id")
    first = info.get("first-entry")
    return cursor.lost(
        start,
        first=cursor.parse_id(first[0]) if first else None,
        max_deleted=cursor.parse_id(deleted) if deleted is not None else None,
        length=int(info.get("length", 0)),
        cap=cap,
    )


async def pages(
    redis: Redis,
    streams: list[str],
    after: list[StreamId],
    upto: Position,
    *,
    check: list[int] | None = None,
    page: int | None = None,
) -> AsyncIterator[tuple[list[Entry], Position]]:
    """Entries with after[j] < id on stream j and position <= upto, in order, a page at a time;
    each page comes with the position it covers up to. `check` (stream caps) turns on the
    retention check on the first page."""
    after = list(after)
    page = page or PAGE
    while True:
        async with redis.pipeline(transaction=check is not None) as pipe:
            if check is not None:
                for name in streams:
                    pipe.xinfo_stream(name)
            for j, name in enumerate(streams):
                start, end = cursor.successor(after[j]), cursor.covered(upto, j)
                pipe.xrange(name, cursor.format_id(start), cursor.format_id(end), count=page)
            replies = await pipe.execute(raise_on_error=False)
        if check is not None:
            infos, replies = replies[: len(streams)], replies[len(streams) :]
            for j, info in enumerate(infos):
                if _info_lost(info, cursor.successor(after[j]), check[j]):
                    raise Expired(streams[j])
            check = None
        entries: list[Entry] = []
        truncated: list[Position] = []
        for j, rows in enumerate(replies):
            if isinstance(rows, Exception):
                raise rows
            for raw_id, fields in rows:
                item = feeds.entry(j, raw_id, fields)
                if item is not None:
                    entries.append(item)
            if len(rows) >= page:
                ms, seq = cursor.parse_id(rows[-1][0])
                truncated.append(Position(ms, seq, j))
        bound = min([upto, *truncated])
        entries = sorted((e for e in entries if e.pos <= bound), key=lambda e: e.pos)
        yield entries, bound
        if not truncated:
            return
        after = cursor.advance(after, bound)


async def snapshot(redis: Redis, partitions: int, count: int) -> tuple[list[bytes], list[StreamId]]:
    """The `count` newest history events (oldest first, as stored) and, per partition feed, the
    last id they cover."""
    count = max(0, min(count, SNAPSHOT_MAX))
    rows: list[list[tuple[tuple[int, int, int], bytes]]] = []
    covered: list[StreamId] = []
    for p in range(partitions):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrevrangebylex(keys.history_ids(p), "+", "-", start=0, num=count)
            pipe.xrevrange(keys.feed_stream(p), "+", "-", count=1)
            members, last = await pipe.execute()
        covered.append(cursor.parse_id(last[0][0]) if last else cursor.NOTHING)
        if members:
            data = await redis.hmget(keys.history_data(p), members)
            rows.append(
                [((*history.unkey(m), p), raw) for m, raw in zip(members, data, strict=True) if raw]
            )
    newest = heapq.merge(*rows, key=lambda row: row[0], reverse=True)
    chosen = [raw for _, raw in itertools.islice(newest, count)]
    chosen.reverse()
    return chosen, covered
