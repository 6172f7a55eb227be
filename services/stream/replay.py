"""Reading the past for one client: the replay after a cursor, and the `?snapshot=N` history.

Replay reads, per feed stream j, the entries after the client's `after[j]` up to the hub's
`upto[j]` with XRANGE, a page per stream at a time, and yields them merged by stream id. Streams
where the client is already at (or past) the hub are not read at all. The first page also reads
XINFO STREAM of the streams it replays, after their XRANGE: if entries the client has not seen
were trimmed away (retention), `Expired` is raised and the client gets `reset` instead. (XINFO
after XRANGE, not in one MULTI, which a cluster refuses across slots: a trim between the two can
only cause a needless reset, never a silent gap.)

The snapshot reads the N newest history events of every partition together with the last id of
that partition's feed, in one MULTI per partition: the aggregator writes an event's history row
and its feed entry in the same transaction, so "these events, then the feed after these ids" has
neither a gap nor a repeat.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from services.stream import feeds
from services.stream.feeds import Entry
from shared import cursor, history, keys
from shared.cursor import StreamId
from shared.redis import Client
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
    redis: Client,
    streams: list[str],
    after: Sequence[StreamId],
    upto: Sequence[StreamId],
    *,
    check: list[int] | None = None,
    page: int | None = None,
) -> AsyncIterator[list[Entry]]:
    """Entries with after[j] < id <= upto[j] on stream j, merged by id, a page at a time.
    `check` (stream caps) turns on the retention check on the first page."""
    after = list(after)
    page = page or PAGE
    todo = [j for j in range(len(streams)) if after[j] < upto[j]]
    while todo:
        async with redis.pipeline(transaction=False) as pipe:
            for j in todo:
                start = cursor.format_id(cursor.successor(after[j]))
                pipe.xrange(streams[j], start, cursor.format_id(upto[j]), count=page)
            if check is not None:
                for j in todo:
                    pipe.xinfo_stream(streams[j])
            replies = await pipe.execute(raise_on_error=False)
        if check is not None:
            for j, info in zip(todo, replies[len(todo) :], strict=True):
                if _info_lost(info, cursor.successor(after[j]), check[j]):
                    raise Expired(streams[j])
            check = None
        entries: list[Entry] = []
        last: dict[int, StreamId] = {}  # streams whose page was full: more may follow
        for j, rows in zip(todo, replies, strict=False):
            if isinstance(rows, Exception):
                raise rows
            entries += [feeds.entry(j, cursor.parse_id(raw), fields) for raw, fields in rows]
            if len(rows) >= page:
                last[j] = entries[-1].id
        # Only up to the lowest id where a full page stopped: that stream may hold entries below
        # what the others returned. What lies above is read again with the next page.
        bound = min(last.values()) if last else None
        if bound is not None:
            cut = {e.stream for e in entries if e.id > bound}
            entries = [e for e in entries if e.id <= bound]
        entries.sort(key=lambda e: e.id)
        for e in entries:
            after[e.stream] = e.id
        yield entries
        todo = [] if bound is None else sorted(j for j in {*last, *cut} if after[j] < upto[j])


async def snapshot(
    redis: Client, partitions: int, count: int
) -> tuple[list[bytes], list[StreamId]]:
    """The `count` newest history events (oldest first, as stored) and, per partition feed, the
    last id they cover."""
    count = max(0, min(count, SNAPSHOT_MAX))

    async def one(p: int) -> tuple[list[tuple[tuple[int, int, int], bytes]], StreamId]:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrevrangebylex(keys.history_ids(p), "+", "-", start=0, num=count)
            pipe.xrevrange(keys.feed_stream(p), "+", "-", count=1)
            members, last = await pipe.execute()
        covered = cursor.parse_id(last[0][0]) if last else cursor.NOTHING
        if not members:
            return [], covered
        data = await redis.hmget(keys.history_data(p), members)
        rows = [((*history.unkey(m), p), raw) for m, raw in zip(members, data, strict=True) if raw]
        return rows, covered

    parts = await asyncio.gather(*(one(p) for p in range(partitions)))
    newest = heapq.merge(*(rows for rows, _ in parts), key=lambda row: row[0], reverse=True)
    chosen = [raw for _, raw in itertools.islice(newest, count)]
    chosen.reverse()
    return chosen, [covered for _, covered in parts]
