"""Every Redis stream and key name, in one place.

Keys carry Redis Cluster hash tags so that everything one atomic step touches shares a slot:
- `{p<N>.<k>}` partition N: its event stream, its state (stats, history, runs, dedup markers) and
  its output feed. An event's partition is chosen by its run/session id, so a run stays in one
  slot and in order. `<k>` is picked so that the partitions' slots are spread evenly over the
  16,384 cluster slots for any partition count (`partition_tag`): on a cluster whose masters hold
  equal slot ranges, P partitions over M masters put P/M (±1) partitions on each.
- `{notify}` the notification bell (coalesced rows, unread index, its own feed).
- `{system}` the metrics sampler (sample ring, its feed, config flag).
- `{global}` the app registry and other small shared rows.
"""

from __future__ import annotations

import functools
import math
import zlib

from redis.crc import key_slot

PREFIX = "llmwatch"

# Consumer groups.
AGGREGATOR_GROUP = "aggregator"

# Field names inside stream entries.
EVENT_FIELD = b"e"  # events stream: the normalised DashboardEvent, orjson bytes
FEED_TYPE_FIELD = b"t"  # feed streams: the SSE event name (e.g. b"event", b"run.failed")
FEED_DATA_FIELD = b"d"  # feed streams: the JSON payload, encoded once


def partition_for(routing_key: str, partitions: int) -> int:
    """Stable partition of a run/session id: the same id always lands in the same stream."""
    if partitions <= 1:
        return 0
    return zlib.crc32(routing_key.encode("utf-8", "surrogatepass")) % partitions


SLOTS = 16384
_GOLDEN = (math.sqrt(5) - 1) / 2
_SLOT_WINDOW = 64  # how close to its target a partition's slot must be


def partition_slot_target(partition: int) -> int:
    """Where partition N's slot should be: the golden-ratio sequence (N + 1/2)·φ mod 1 puts the
    first P points within ±1 of P/M in every one of M equal slot ranges, for every P (a
    low-discrepancy sequence), so adding partitions never unbalances the ones already there."""
    return int(((partition + 0.5) * _GOLDEN) % 1.0 * SLOTS)


@functools.cache
def partition_tag(partition: int) -> str:
    """The hash tag of partition N: `p<N>.<k>` for the smallest k whose slot is near the target."""
    target = partition_slot_target(partition)
    k = 0
    while True:
        tag = f"p{partition}.{k}"
        distance = abs(key_slot(tag.encode()) - target)
        if min(distance, SLOTS - distance) <= _SLOT_WINDOW // 2:
            return tag
        k += 1


def _p(partition: int) -> str:
    return f"{PREFIX}:{{{partition_tag(partition)}}}"


# --- per partition (slot {pN}) --------------------------------------------------------------
def events_stream(partition: int) -> str:
    """Ingest → aggregator. Trimmed only below what the aggregator group has acknowledged."""
    return f"{_p(partition)}:events"


def feed_stream(partition: int) -> str:
    """Aggregator → stream gateway: `event`, `run.*`, `deadletter` entries. MAXLEN ~feed_max."""
    return f"{_p(partition)}:feed"


def deadletter_stream(partition: int) -> str:
    return f"{_p(partition)}:deadletter"


def partition_key(partition: int, name: str) -> str:
    """Any other per-partition state key (stats, history, runs, markers): `llmwatch:{pN}:<name>`."""
    return f"{_p(partition)}:{name}"


# --- notifications (slot {notify}) ----------------------------------------------------------
NOTIFY = f"{PREFIX}:{{notify}}"
NOTIFY_FEED = f"{NOTIFY}:feed"


def notify_key(name: str) -> str:
    return f"{NOTIFY}:{name}"


# --- system sampler (slot {system}) ---------------------------------------------------------
SYSTEM = f"{PREFIX}:{{system}}"
SYSTEM_FEED = f"{SYSTEM}:feed"
SYSTEM_SAMPLES = f"{SYSTEM}:samples"  # the last 32 samples, oldest first
SYSTEM_CONFIG_STALE = f"{SYSTEM}:config-stale"


SYSTEM_FEED_MAXLEN = 10_000  # ~14 h of 5 s samples and config flips for SSE resume


def system_key(name: str) -> str:
    return f"{SYSTEM}:{name}"


# --- global (slot {global}) -----------------------------------------------------------------
GLOBAL = f"{PREFIX}:{{global}}"
APPS = f"{GLOBAL}:apps"  # hash: app id -> JSON {id, name, created_at}
# Names one life of the keyspace (random, SET NX by the first gateway): SSE cursors carry it, so
# a cursor issued before Redis was wiped is answered with `reset` instead of a silent gap.
FEED_EPOCH = f"{GLOBAL}:feed-epoch"


def global_key(name: str) -> str:
    return f"{GLOBAL}:{name}"


def rate_limit_key(scope: str, ident: str, window: int) -> str:
    """Ingest rate-limit counter: requests from one client IP or for one app (`scope` is `ip`
    or `app`) in one fixed window (epoch second). Expires two seconds later."""
    return f"{GLOBAL}:rl:{scope}:{ident}:{window}"


def feed_streams(partitions: int) -> list[str]:
    """Every feed the stream gateway follows, in the fixed order its SSE cursor encodes."""
    return [feed_stream(p) for p in range(partitions)] + [NOTIFY_FEED, SYSTEM_FEED]


# --- aggregator state (slot {pN}), read by the stream gateway's read APIs -------------------
def stats_key(partition: int) -> str:
    """Hash of counters (see services/aggregator/stats.py for the field names)."""
    return partition_key(partition, "stats")


def eps_key(partition: int, second: int) -> str:
    """Events that arrived in one wall-clock second (for events_per_second); expires."""
    return partition_key(partition, f"eps:{second}")


def dedup_key(partition: int, bucket: int) -> str:
    """Set of applied event-id digests for one time bucket; expires after the dedup window."""
    return partition_key(partition, f"seen:{bucket}")


def history_ids(partition: int) -> str:
    """Sorted set (score 0, ordered by member): history keys = arrival order."""
    return partition_key(partition, "history:ids")


def history_data(partition: int) -> str:
    """Hash: history key -> DashboardEvent JSON."""
    return partition_key(partition, "history:data")


def history_index(partition: int, field: str, value: str) -> str:
    """Sorted set like history_ids, holding only the events whose `field` equals `value`."""
    return partition_key(partition, f"history:by:{field}:{value}")


def history_indexes(partition: int) -> str:
    """Set of every history_index key of the partition (so trimming can reach them all)."""
    return partition_key(partition, "history:indexes")


def run_key(partition: int, run_id: str) -> str:
    """Hash `f` (merge facts JSON) and `v` (rendered run JSON) of one run."""
    return partition_key(partition, f"run:{run_id}")


def runs_index(partition: int, field: str = "all", value: str = "") -> str:
    """Sorted set run id -> first-arrival ms; `all`, or by status/end_reason/task_name/app."""
    return partition_key(partition, f"runs:{field}:{value}" if value else f"runs:{field}")


def run_children(partition: int, parent_id: str) -> str:
    """Set of child run ids whose events landed in this partition."""
    return partition_key(partition, f"children:{parent_id}")


# --- notification bell (slot {notify}) ------------------------------------------------------
NOTIFY_ROWS = f"{NOTIFY}:rows"  # hash: id -> row JSON
NOTIFY_IDS = f"{NOTIFY}:ids"  # sorted set, score 0: ids in ULID (creation) order
NOTIFY_AGE = f"{NOTIFY}:age"  # sorted set: id -> last written (epoch s), for age retention
NOTIFY_OPEN = f"{NOTIFY}:open"  # hash: fingerprint -> id of its newest row
NOTIFY_UNREAD = f"{NOTIFY}:unread"  # set of unread ids
NOTIFY_APPLIED = f"{NOTIFY}:applied"  # sorted set: dedup id -> applied at (epoch s)
NOTIFY_VERSION = f"{NOTIFY}:version"  # counter, bumped by every change: optimistic concurrency


def outbox_key(partition: int) -> str:
    """Hash dedup id -> notification occurrence JSON, written in the partition's MULTI and
    removed once the bell has it (a transactional outbox: a crash between the two loses nothing)."""
    return partition_key(partition, "outbox")


def runs_indexes(partition: int) -> str:
    """Set of every runs_index key of the partition (so pruning can reach them all)."""
    return partition_key(partition, "runs:indexes")
