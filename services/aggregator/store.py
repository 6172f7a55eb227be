"""One partition's commit: the exactly-once step (I/O edge around `fold`).

    read    (one Lua call) which event ids of the batch are already applied, the stored runs
            with their versions, the history size
    fold    (pure) -> one write set
    commit  (one Lua call, atomic) compare-and-set: if none of the events to apply got a marker
            meanwhile and no touched run changed version, write markers, stats increments,
            events/s buckets, history + indexes, runs + indexes + children, feed entries and the
            notification outbox; else write nothing -> read again and re-fold

This is optimistic concurrency like WATCH/MULTI/EXEC, checked per event id and per run instead of
per key (a WATCH on a marker set would conflict with every other commit of the partition), in two
round trips. Everything lives in the partition's slot `{pN}`, so the commit is one atomic script
even on a cluster. A crash before it leaves nothing; after it, the markers turn a redelivery into
a no-op.

Dedup markers: 96-bit digests of event ids (base64) in time-bucketed sets (`seen:<bucket>`, bucket =
dedup window / 6 of wall-clock time at apply), each expiring one window after its bucket closed;
a read checks every bucket of the last window (plus one on each side for clock skew between
replicas). Memory is bounded by (events applied per window) x ~60 bytes.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from services.aggregator import scripts
from services.aggregator.fold import Prepared, RunChange, WriteSet, fold
from shared import keys
from shared.settings import Settings

MAX_ATTEMPTS = 50
EPS_TTL_S = 120
RUN_INDEXED = ("status", "end_reason", "task_name", "app")


@dataclass
class Commit:
    writes: WriteSet
    conflicts: int  # WatchError retries
    history_size: int


def bucket_span(settings: Settings) -> int:
    return max(1, math.ceil(settings.dedup_window_s / 6))


def dedup_buckets(settings: Settings, now: float) -> tuple[list[int], int]:
    """(buckets to check, bucket to write) for the dedup window at `now`."""
    span = bucket_span(settings)
    current = int(now // span)
    first = int((now - settings.dedup_window_s) // span) - 1
    return list(range(first, current + 2)), current


def history_cap(settings: Settings) -> int:
    """History kept per partition: LLMWATCH_HISTORY_MAX shared across partitions."""
    return max(1, math.ceil(settings.history_max / settings.partitions))


async def commit(redis: Redis, settings: Settings, partition: int, prepared: Prepared) -> Commit:
    if not prepared.events:
        return Commit(WriteSet(failed=list(prepared.bad)), 0, 0)
    digests = prepared.digests()
    run_ids = prepared.run_ids()
    for attempt in range(MAX_ATTEMPTS):
        now = time.time()
        buckets, current = dedup_buckets(settings, now)
        bucket_keys = [keys.dedup_key(partition, b) for b in buckets]
        applied, stored, versions, size = await _read(
            redis, partition, bucket_keys, digests, run_ids
        )
        writes = fold(prepared, applied, stored)
        expected = {keys.run_key(partition, r): versions[r] for r in writes.runs}
        blob = _write_set(settings, partition, writes, current, (bucket_keys, expected))
        commit_keys = _commit_keys(partition, current)
        if await redis.eval(scripts.COMMIT, len(commit_keys), *commit_keys, blob):
            return Commit(writes, attempt, size + len(writes.history))
        # Someone applied one of these events or changed one of these runs meanwhile.
        await asyncio.sleep(random.uniform(0, 0.001 * (attempt + 1)))
    raise RuntimeError(f"partition {partition}: commit kept conflicting, will retry the batch")


async def _read(
    redis: Redis, partition: int, bucket_keys: list[str], digests: list[str], run_ids: list[str]
) -> tuple[set[str], dict[str, tuple[dict[str, Any], dict[str, Any]]], dict[str, str], int]:
    query = {
        "buckets": bucket_keys,
        "runs": [keys.run_key(partition, r) for r in run_ids],
        "digests": digests,
    }
    reply = await redis.eval(scripts.LOAD, 1, keys.history_ids(partition), orjson.dumps(query))
    flags, size, runs = reply[0], int(reply[1]), reply[2:]
    applied = {d for d, flag in zip(digests, flags, strict=True) if flag == ord("1")}
    stored = {}
    versions = {}
    for run_id, facts, view, version in zip(
        run_ids, runs[::3], runs[1::3], runs[2::3], strict=True
    ):
        versions[run_id] = version.decode()
        if facts and view:
            stored[run_id] = (orjson.loads(facts), orjson.loads(view))
    return applied, stored, versions, size


def _commit_keys(p: int, bucket: int) -> list[str]:
    """The fixed keys scripts.COMMIT declares (the per-item ones share their `{pN}` tag)."""
    return [
        keys.stats_key(p),
        keys.history_ids(p),
        keys.history_data(p),
        keys.history_indexes(p),
        keys.feed_stream(p),
        keys.outbox_key(p),
        keys.dedup_key(p, bucket),
        keys.runs_indexes(p),
    ]


def _write_set(
    settings: Settings, p: int, ws: WriteSet, bucket: int, checks: tuple[list[str], dict[str, str]]
) -> bytes:
    """The write set as the one JSON object scripts.COMMIT reads (numbers as strings)."""
    bucket_keys, versions = checks
    by_index: dict[str, list[str]] = defaultdict(list)
    ids: list[str] = []
    data: list[Any] = []
    for member, raw, indexes in ws.history:
        ids += ("0", member)
        data += (member, raw.decode())
        for field, value in indexes:
            by_index[keys.history_index(p, field, value)] += ("0", member)
    # JSON (cjson in Redis): Redis 6.2's cmsgpack predates MessagePack's str8/bin types. Byte
    # strings go as text (all UTF-8 JSON, checked by orjson when the event was parsed), numbers
    # as strings.
    return orjson.dumps({
        "type_field": keys.FEED_TYPE_FIELD.decode(),
        "data_field": keys.FEED_DATA_FIELD.decode(),
        "buckets": bucket_keys,
        "markers": ws.markers,
        "versions": list(versions.items()),
        "marker_expire": str((bucket + 1) * bucket_span(settings) + settings.dedup_window_s),
        "counters": [(f, str(n)) for f, n in ws.stats.items() if n],
        "since": str(ws.since_ms) if ws.since_ms is not None else "",
        "eps_ttl": str(EPS_TTL_S),
        "eps": [(keys.eps_key(p, second), str(n)) for second, n in ws.eps.items()],
        "history_ids": ids,
        "history_data": data,
        "indexes": list(by_index.items()),
        **_run_writes(settings, p, ws.runs),
        "children_ttl": str(settings.run_retention_s),
        "children": [(keys.run_children(p, parent), child) for parent, child in ws.children],
        "feed_max": str(settings.feed_max),
        # An `event` entry is the history item of the same rank: sent once, as history data.
        "feed": [(name,) if name == "event" else (name, data.decode()) for name, data in ws.feed],
        "outbox": [x for o in ws.occurrences for x in (o.dedup_id, orjson.dumps(o.__dict__).decode())],
    })  # fmt: skip


def _run_index_values(view: dict[str, Any] | None) -> set[tuple[str, str]]:
    if view is None:
        return set()
    return {(f, str(view[f])) for f in RUN_INDEXED if view.get(f) not in (None, "")}


def _run_writes(settings: Settings, p: int, changes: dict[str, RunChange]) -> dict[str, Any]:
    runs: list[tuple[Any, ...]] = []
    adds: dict[str, list[str]] = defaultdict(list)
    removes: dict[str, list[str]] = defaultdict(list)
    for run_id, change in changes.items():
        first_ms = str(int(change.facts["first_ms"]))
        expire = str(int(change.facts["first_ms"]) // 1000 + settings.run_retention_s)
        key = keys.run_key(p, run_id)
        facts, view = orjson.dumps(change.facts).decode(), change.encoded().decode()
        runs.append((key, facts, view, str(change.facts["n"]), expire))
        adds[keys.runs_index(p)] += (first_ms, run_id)
        old, new = _run_index_values(change.before), _run_index_values(change.view)
        for field, value in old - new:
            removes[keys.runs_index(p, field, value)].append(run_id)
        for field, value in new:
            adds[keys.runs_index(p, field, value)] += (first_ms, run_id)
    return {"runs": runs, "run_removes": list(removes.items()), "run_adds": list(adds.items())}


async def trim_history(redis: Redis, settings: Settings, partition: int) -> int:
    script = redis.register_script(scripts.TRIM_HISTORY)
    keys_ = [
        keys.history_ids(partition),
        keys.history_data(partition),
        keys.history_indexes(partition),
    ]
    return int(await script(keys=keys_, args=[history_cap(settings)]))


async def prune_runs(redis: Redis, settings: Settings, partition: int) -> None:
    """Drop expired runs from the run indexes (the run hashes expire by themselves)."""
    cutoff = (time.time() - settings.run_retention_s) * 1000
    index_keys = await redis.smembers(keys.runs_indexes(partition))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(keys.runs_index(partition), "-inf", cutoff)
        for key in index_keys:
            pipe.zremrangebyscore(key, "-inf", cutoff)
        await pipe.execute()
