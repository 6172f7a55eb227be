"""One partition's commit: the exactly-once step (I/O edge around `fold`).

    WATCH  the dedup buckets of the window + the run keys the batch touches
    read   which event ids are already applied, the stored runs, the history size
    fold   (pure) -> one write set
    MULTI  markers, stats increments, events/s buckets, history + indexes, runs + indexes +
           children, feed entries, notification outbox
    EXEC   -> WatchError: someone else committed to the same keys meanwhile: read again

Everything lives in the partition's slot `{pN}`, so this is one atomic transaction even on a
cluster. A crash before EXEC leaves nothing; after EXEC the markers turn a redelivery into a no-op.

Dedup markers: 12-byte digests of event ids in time-bucketed sets (`seen:<bucket>`, bucket =
dedup window / 6 of wall-clock time at apply), each expiring one window after its bucket closed;
a read checks every bucket of the last window (plus one on each side for clock skew between
replicas). Memory is bounded by (events applied per window) x ~50 bytes.
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
from redis.exceptions import WatchError

from services.aggregator.fold import Prepared, RunChange, WriteSet, fold
from shared import keys
from shared import stats as stats_fields
from shared.settings import Settings

MAX_ATTEMPTS = 50
EPS_TTL_S = 120
RUN_INDEXED = ("status", "end_reason", "task_name", "app")

# KEYS: history ids, history data, index registry. ARGV: entries to keep.
TRIM_HISTORY_LUA = """
local total = redis.call('ZCARD', KEYS[1])
local excess = total - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local removed = 0
while removed < excess do
  local n = math.min(1000, excess - removed)
  local members = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  if #members == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('HDEL', KEYS[2], unpack(members))
  local cutoff = '[' .. members[#members]
  for _, idx in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('ZREMRANGEBYLEX', idx, '-', cutoff)
    if redis.call('ZCARD', idx) == 0 then
      redis.call('DEL', idx)
      redis.call('SREM', KEYS[3], idx)
    end
  end
  removed = removed + #members
end
return removed
"""


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
    run_keys = [keys.run_key(partition, r) for r in run_ids]
    for attempt in range(MAX_ATTEMPTS):
        now = time.time()
        buckets, current = dedup_buckets(settings, now)
        bucket_keys = [keys.dedup_key(partition, b) for b in buckets]
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*bucket_keys, *run_keys)
                applied, stored, size = await _read(redis, partition, bucket_keys, digests, run_ids)
                writes = fold(prepared, applied, stored)
                pipe.multi()
                _write(pipe, settings, partition, writes, current)
                await pipe.execute()
            except WatchError:
                await asyncio.sleep(random.uniform(0, 0.001 * (attempt + 1)))
                continue
        return Commit(writes, attempt, size + len(writes.history))
    raise RuntimeError(f"partition {partition}: commit kept conflicting, will retry the batch")


async def _read(
    redis: Redis, partition: int, bucket_keys: list[str], digests: list[bytes], run_ids: list[str]
) -> tuple[set[bytes], dict[str, tuple[dict[str, Any], dict[str, Any]]], int]:
    # Any connection may read: the WATCH already issued guards the EXEC against later writes.
    async with redis.pipeline(transaction=False) as reads:
        for key in bucket_keys:
            reads.smismember(key, digests)
        for run_id in run_ids:
            reads.hmget(keys.run_key(partition, run_id), "f", "v")
        reads.zcard(keys.history_ids(partition))
        replies = await reads.execute()
    applied: set[bytes] = set()
    for flags in replies[: len(bucket_keys)]:
        applied.update(d for d, hit in zip(digests, flags, strict=True) if hit)
    stored = {}
    for run_id, (facts, view) in zip(run_ids, replies[len(bucket_keys) : -1], strict=True):
        if facts is not None and view is not None:
            stored[run_id] = (orjson.loads(facts), orjson.loads(view))
    return applied, stored, int(replies[-1])


def _write(pipe: Any, settings: Settings, p: int, ws: WriteSet, bucket: int) -> None:
    if ws.markers:
        marker_key = keys.dedup_key(p, bucket)
        pipe.sadd(marker_key, *ws.markers)
        pipe.expireat(marker_key, (bucket + 1) * bucket_span(settings) + settings.dedup_window_s)
    stats_key = keys.stats_key(p)
    for field, amount in ws.stats.items():
        if amount:
            pipe.hincrby(stats_key, field, amount)
    if ws.since_ms is not None:
        pipe.hsetnx(stats_key, stats_fields.SINCE, ws.since_ms)
    for second, count in ws.eps.items():
        pipe.incrby(keys.eps_key(p, second), count)
        pipe.expire(keys.eps_key(p, second), EPS_TTL_S)
    _write_history(pipe, p, ws)
    _write_runs(pipe, settings, p, ws.runs)
    for parent, child in ws.children:
        pipe.sadd(keys.run_children(p, parent), child)
        pipe.expire(keys.run_children(p, parent), settings.run_retention_s)
    for name, data in ws.feed:
        pipe.xadd(
            keys.feed_stream(p),
            {keys.FEED_TYPE_FIELD: name, keys.FEED_DATA_FIELD: data},
            maxlen=settings.feed_max,
            approximate=True,
        )
    if ws.occurrences:
        pipe.hset(keys.outbox_key(p), mapping={o.dedup_id: orjson.dumps(o.__dict__) for o in ws.occurrences})


def _write_history(pipe: Any, p: int, ws: WriteSet) -> None:
    if not ws.history:
        return
    by_index: dict[str, dict[str, int]] = defaultdict(dict)
    for member, _raw, indexes in ws.history:
        for field, value in indexes:
            by_index[keys.history_index(p, field, value)][member] = 0
    pipe.zadd(keys.history_ids(p), {member: 0 for member, _, _ in ws.history})
    pipe.hset(keys.history_data(p), mapping={member: raw for member, raw, _ in ws.history})
    for index, members in by_index.items():
        pipe.zadd(index, members)
    pipe.sadd(keys.history_indexes(p), *by_index)


def _run_index_values(view: dict[str, Any] | None) -> set[tuple[str, str]]:
    if view is None:
        return set()
    return {(f, str(view[f])) for f in RUN_INDEXED if view.get(f) not in (None, "")}


def _write_runs(pipe: Any, settings: Settings, p: int, changes: dict[str, RunChange]) -> None:
    adds: dict[str, dict[str, int]] = defaultdict(dict)
    removes: dict[str, list[str]] = defaultdict(list)
    for run_id, change in changes.items():
        key = keys.run_key(p, run_id)
        first_ms = int(change.facts["first_ms"])
        pipe.hset(key, mapping={"f": orjson.dumps(change.facts), "v": orjson.dumps(change.view)})
        pipe.expireat(key, first_ms // 1000 + settings.run_retention_s)
        adds[keys.runs_index(p)][run_id] = first_ms
        old, new = _run_index_values(change.before), _run_index_values(change.view)
        for field, value in old - new:
            removes[keys.runs_index(p, field, value)].append(run_id)
        for field, value in new:
            adds[keys.runs_index(p, field, value)][run_id] = first_ms
    for index, members in removes.items():
        pipe.zrem(index, *members)
    for index, scored in adds.items():
        pipe.zadd(index, scored)
    if adds:
        pipe.sadd(keys.runs_indexes(p), *adds)


async def trim_history(redis: Redis, settings: Settings, partition: int) -> int:
    script = redis.register_script(TRIM_HISTORY_LUA)
    keys_ = [keys.history_ids(partition), keys.history_data(partition), keys.history_indexes(partition)]
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
