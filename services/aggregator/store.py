"""One partition's commit: the exactly-once step (I/O edge around `fold`).

    read    (one Lua call) which event ids of the batch are already applied, the stored runs
            with their versions; skipped when the lane already knows every run of the batch
            (runcache.py) and the events are taken as new (the commit checks both)
    fold    (pure) -> one write set
    commit  (one Lua call, atomic) compare-and-set: if none of the events to apply got a marker
            meanwhile and no touched run changed version, acknowledge the entries (XACK) and
            write markers, stats increments, events/s buckets, history + indexes, runs + indexes
            + children, feed entries and the notification outbox; else write nothing -> read
            again and re-fold

This is optimistic concurrency like WATCH/MULTI/EXEC, checked per event id and per run instead of
per key (a WATCH on a marker set would conflict with every other commit of the partition), in two
round trips. Everything, the events stream included, lives in the partition's slot `{pN}`, so the
commit is one atomic script even on a cluster. A crash before it leaves nothing (the entries stay
pending); after it, the entries are acknowledged and the markers turn any redelivery (a client
re-send, a reclaim that raced the commit) into a no-op.

Dedup markers: 96-bit digests of event ids (base64) in time-bucketed sets (`seen:<bucket>`, bucket =
dedup window / 6 of wall-clock time at apply), each expiring one window after its bucket closed;
a read checks every bucket of the last window (plus one on each side for clock skew between
replicas). Memory is bounded by (events applied per window) x ~60 bytes.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.aggregator import scripts
from services.aggregator.fold import Prepared, RunChange, WriteSet, fold
from services.aggregator.runcache import Known, Publication, RunState
from services.aggregator.runs import Facts
from shared import keys
from shared.redis import Client
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


async def commit(
    redis: Client,
    settings: Settings,
    partition: int,
    prepared: Prepared,
    acks: Sequence[str] = (),
    turn: Callable[[], Awaitable[object]] | None = None,
    known: Known | None = None,
    publish: Callable[[dict[str, RunState], list[Publication]], Publication] | None = None,
) -> Commit:
    """Apply `prepared` exactly once and acknowledge its entries (plus `acks`, entries with
    nothing to apply) in the same atomic step. `turn`, awaited right before the write, lets the
    caller order writes (the fold and the reads before it may overlap an earlier commit).

    `known` run states (runcache.py) are folded on instead of read, on the first attempt, if
    their publications all landed by the time of the write; `publish` is handed the run states
    of each fold before its write, and the publication is settled (landed or failed) after."""
    if not prepared.events:
        if acks:
            await redis.xack(keys.events_stream(partition), keys.AGGREGATOR_GROUP, *acks)
        if publish is not None:
            publish({}, []).settle(landed=True)  # nothing written, nothing claimed
        return Commit(WriteSet(failed=list(prepared.bad)), 0, 0)
    digests = prepared.digests()
    run_ids = prepared.run_ids()
    for attempt in range(MAX_ATTEMPTS):
        guess = known if attempt == 0 and known is not None else None
        now = time.time()
        buckets, current = dedup_buckets(settings, now)
        bucket_keys = [keys.dedup_key(partition, b) for b in buckets]
        to_read = [r for r in run_ids if r not in guess.states] if guess is not None else run_ids
        if guess is not None and not to_read:
            # Every run is known: no read at all. The events are taken as new; a re-sent one
            # fails the commit's marker check, and the next attempt reads.
            applied: set[str] = set()
            stored: dict[str, tuple[Facts, dict[str, Any]]] = {}
            versions: dict[str, str] = {}
        else:
            applied, stored, versions = await _read(redis, partition, bucket_keys, digests, to_read)
        if guess is not None:
            for run_id, (facts, view, version) in guess.states.items():
                stored[run_id], versions[run_id] = (facts, view), version
        writes = fold(prepared, applied, stored)
        publication = None
        if publish is not None:
            states = _states(run_ids, stored, versions, writes)
            publication = publish(states, guess.sources if guess else [])
        args = _commit_args(settings, partition, writes, current, bucket_keys, versions, acks)
        if turn is not None:
            await turn()
        if guess is not None and not guess.valid():
            if publication is not None:
                publication.settle(landed=False)
            continue  # an earlier commit did not land as it published: read, fold again
        try:
            landed = await scripts.COMMIT(redis, _commit_keys(partition, current), args)
        except BaseException:
            if publication is not None:
                publication.settle(landed=False)  # maybe it did: the next batch reads it
            raise
        if publication is not None:
            publication.settle(landed=bool(landed))
        if landed:
            return Commit(writes, attempt, int(landed[1]))
        # Someone applied one of these events or changed one of these runs meanwhile.
        await asyncio.sleep(random.uniform(0, 0.001 * (attempt + 1)))
    raise RuntimeError(f"partition {partition}: commit kept conflicting, will retry the batch")


def _states(
    run_ids: list[str],
    stored: dict[str, tuple[Facts, dict[str, Any]]],
    versions: dict[str, str],
    writes: WriteSet,
) -> dict[str, RunState]:
    """Each run's state once `writes` land: its change, else what it was folded on."""
    out: dict[str, RunState] = {}
    for run_id in run_ids:
        change = writes.runs.get(run_id)
        if change is not None:
            out[run_id] = (change.facts, change.view, str(change.facts["n"]))
        elif run_id in stored:
            facts, view = stored[run_id]
            out[run_id] = (facts, view, versions[run_id])
    return out


async def _read(
    redis: Client, partition: int, bucket_keys: list[str], digests: list[str], run_ids: list[str]
) -> tuple[set[str], dict[str, tuple[dict[str, Any], dict[str, Any]]], dict[str, str]]:
    args: list[Any] = [len(bucket_keys), *bucket_keys, "".join(digests)]
    args += [keys.run_key(partition, r) for r in run_ids]
    reply = await scripts.LOAD(redis, (keys.history_ids(partition),), args)
    flags, runs = reply[0], reply[1:]
    applied = {d for d, flag in zip(digests, flags, strict=True) if flag == 49}  # b"1"
    stored = {}
    versions = {}
    for run_id, facts, view, version in zip(
        run_ids, runs[::3], runs[1::3], runs[2::3], strict=True
    ):
        versions[run_id] = version.decode()
        if facts and view:
            stored[run_id] = (orjson.loads(facts), orjson.loads(view))
    return applied, stored, versions


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
        keys.events_stream(p),
    ]


def _commit_args(
    settings: Settings,
    p: int,
    ws: WriteSet,
    bucket: int,
    bucket_keys: list[str],
    versions: dict[str, str],
    acks: Sequence[str],
) -> list[Any]:
    """The write set as scripts.COMMIT's flat ARGV (see its layout there)."""
    index_keys, runs = _run_args(p, ws.runs, versions)
    out: list[Any] = [
        keys.AGGREGATOR_GROUP,
        (bucket + 1) * bucket_span(settings) + settings.dedup_window_s,
        ws.since_ms if ws.since_ms is not None else "",
        EPS_TTL_S,
        settings.feed_max,
        settings.run_retention_s,
        keys.FEED_TYPE_FIELD,
        keys.FEED_DATA_FIELD,
        keys.run_key(p, ""),
        "".join(ws.markers),
        len(bucket_keys),
        *bucket_keys,
        len(index_keys),
        *index_keys,
        len(ws.runs),
        *runs,
        len(ws.done) + len(acks),
        *ws.done,
        *acks,
    ]
    counters = [(f, n) for f, n in ws.stats.items() if n]
    out.append(len(counters))
    for pair in counters:
        out += pair
    out.append(len(ws.eps))
    for second, n in ws.eps.items():
        out += (keys.eps_key(p, second), n)
    out.append(len(ws.history))
    by_index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for position, (member, raw, indexes) in enumerate(ws.history, 1):
        out += (member, raw)
        for index in indexes:
            by_index[index].append(position)
    out.append(len(by_index))
    for (field, value), positions in by_index.items():
        out += (keys.history_index(p, field, value), struct.pack(f">{len(positions)}H", *positions))
    out.append(len(ws.children))
    for parent, child in ws.children:
        out += (keys.run_children(p, parent), child)
    out.append(len(ws.occurrences))
    for o in ws.occurrences:
        out += (o.dedup_id, orjson.dumps(o.__dict__))
    return out


FEED_CODES = {
    "run.created": "c",
    "run.started": "s",
    "run.completed": "d",
    "run.failed": "f",
    "run.updated": "u",
}
REMOVE = 0x8000


def _run_index_values(view: dict[str, Any] | None) -> set[tuple[str, str]]:
    if view is None:
        return set()
    return {(f, str(view[f])) for f in RUN_INDEXED if view.get(f) not in (None, "")}


def _run_args(
    p: int, changes: dict[str, RunChange], versions: dict[str, str]
) -> tuple[list[str], list[Any]]:
    """(run index keys, the runs section): one record per run, its index moves as positions
    in the key list (the index of all runs first: a run enters it, and gets its expiry, when
    first seen or when an earlier event moved its first arrival)."""
    index_keys = [keys.runs_index(p)]
    position: dict[tuple[str, str], int] = {}

    def at(field: str, value: str) -> int:
        found = position.get((field, value))
        if found is None:
            index_keys.append(keys.runs_index(p, field, value))
            found = position[(field, value)] = len(index_keys)
        return found

    out: list[Any] = []
    for run_id, change in changes.items():
        first_ms = int(change.facts["first_ms"])
        moved = change.was_ms != first_ms
        old, new = _run_index_values(change.before), _run_index_values(change.view)
        ops = [1] if moved else []
        ops += [REMOVE | at(f, v) for f, v in old - new]
        ops += [at(f, v) for f, v in (new if moved else new - old)]
        codes = "".join(FEED_CODES[name] for name in change.feed)
        out += (
            run_id,
            versions[run_id],
            change.facts["n"],
            first_ms,
            orjson.dumps(change.facts),
            change.encoded(),
            struct.pack(f">{len(ops)}H", *ops),
            codes,
            change.error() if "f" in codes else "",
        )
    return index_keys, out


async def trim_history(redis: Client, settings: Settings, partition: int) -> int:
    keys_ = [
        keys.history_ids(partition),
        keys.history_data(partition),
        keys.history_indexes(partition),
    ]
    return int(await scripts.TRIM_HISTORY(redis, keys_, [history_cap(settings)]))


async def prune_runs(redis: Client, settings: Settings, partition: int) -> None:
    """Drop expired runs from the run indexes (the run hashes expire by themselves)."""
    cutoff = (time.time() - settings.run_retention_s) * 1000
    index_keys = await redis.smembers(keys.runs_indexes(partition))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(keys.runs_index(partition), "-inf", cutoff)
        for key in index_keys:
            pipe.zremrangebyscore(key, "-inf", cutoff)
        await pipe.execute()
