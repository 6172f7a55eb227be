"""One partition's share of a read batch, from delivered entries to committed state (I/O edge).

`split` sorts the entries: trimmed while pending (nothing left to apply: acknowledged with the
commit), delivered more than `max_deliveries` times (dead-lettered), the rest parsed for the
fold. `apply` commits them exactly once (store.commit: state and XACK in one atomic script),
dead-letters the entries that failed their last allowed delivery, and returns the notifications
the commit left in the partition's outbox, for the bell.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.aggregator import deadletter, store
from services.aggregator.deadletter import Letter
from services.aggregator.fold import Prepared, prepare
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.runcache import Known, Publication, RunState
from shared.notifications import Occurrence
from shared.redis import Client
from shared.settings import Settings

log = logging.getLogger(__name__)

Entry = tuple[str, bytes | None, int]  # stream id, stored bytes (None: trimmed), deliveries


@dataclass
class Batch:
    partition: int
    prepared: Prepared
    acks: list[str] = field(default_factory=list)  # trimmed while pending: just acknowledge
    letters: list[Letter] = field(default_factory=list)  # over the delivery limit
    deliveries: dict[str, int] = field(default_factory=dict)
    raws: dict[str, bytes] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prepared.events) + len(self.prepared.bad) + len(self.acks)


def split(partition: int, entries: list[Entry], limit: int) -> Batch:
    letters: list[Letter] = []
    acks: list[str] = []
    fresh: list[tuple[str, bytes]] = []
    deliveries: dict[str, int] = {}
    for stream_id, raw, count in entries:
        if raw is None:
            acks.append(stream_id)
        elif count > limit:
            letters.append(
                Letter(stream_id, raw, f"delivered {count} times without success", count)
            )
        else:
            fresh.append((stream_id, raw))
            if count > 1:
                deliveries[stream_id] = count
    batch = Batch(partition, prepare(fresh), acks, letters, deliveries)
    if batch.prepared.bad:
        batch.raws = dict(fresh)
    return batch


async def apply(
    redis: Client,
    settings: Settings,
    metrics: AggregatorMetrics,
    consumer: str,
    batch: Batch,
    turn: Callable[[], Awaitable[object]] | None = None,
    known: Known | None = None,
    publish: Callable[[dict[str, RunState], list[Publication]], Publication] | None = None,
) -> list[Occurrence]:
    """Commit the batch; returns the notifications to raise (already in the outbox). See
    store.commit for `turn`, `known` and `publish`."""
    partition, prepared = batch.partition, batch.prepared
    result = await store.commit(
        redis, settings, partition, prepared, batch.acks, turn, known, publish
    )
    writes = result.writes
    metrics.conflicts.inc(result.conflicts)
    metrics.duplicates.inc(writes.duplicates)
    for source, n in _sources(prepared, writes.markers).items():
        metrics.processed.labels(source).inc(n)
    letters = list(batch.letters)
    limit = settings.max_deliveries
    for stream_id, reason in writes.failed:
        metrics.failed.labels("event").inc()
        log.warning("aggregator: partition %d entry %s failed: %s", partition, stream_id, reason)
        count = batch.deliveries.get(stream_id, 1)
        if count >= limit:
            raw = batch.raws.get(stream_id) or _raw_of(prepared, stream_id)
            letters.append(Letter(stream_id, raw, reason, count))
    occurrences = list(writes.occurrences)
    if letters:
        occurrences += await deadletter.move(redis, settings, partition, letters, consumer)
        metrics.deadlettered.inc(len(letters))
    if result.history_size > store.history_cap(settings) * 1.05:
        await store.trim_history(redis, settings, partition)
    return occurrences


def _raw_of(prepared: Prepared, stream_id: str) -> bytes | None:
    return next((e.raw for e in prepared.events if e.stream_id == stream_id), None)


def _sources(prepared: Prepared, markers: list[str]) -> Counter[str]:
    """Applied events by source (an id sent twice in one batch is applied, and counted, once)."""
    pending = set(markers)
    counts: Counter[str] = Counter()
    for event in prepared.events:
        if event.digest in pending:
            pending.discard(event.digest)
            counts[event.source] += 1
    return counts
