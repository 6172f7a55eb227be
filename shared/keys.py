"""Every Redis stream and key name, in one place.

Keys carry Redis Cluster hash tags so that everything one atomic step touches shares a slot:
- `{p<N>}` partition N: its event stream, its state (stats, history, runs, dedup markers) and its
  output feed. An event's partition is chosen by its run/session id, so a run stays in one slot
  and in order.
- `{notify}` the notification bell (coalesced rows, unread index, its own feed).
- `{system}` the metrics sampler (sample ring, its feed, config flag).
- `{global}` the app registry and other small shared rows.
"""

from __future__ import annotations

import zlib

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


def _p(partition: int) -> str:
    return f"{PREFIX}:{{p{partition}}}"


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


def system_key(name: str) -> str:
    return f"{SYSTEM}:{name}"


# --- global (slot {global}) -----------------------------------------------------------------
GLOBAL = f"{PREFIX}:{{global}}"
APPS = f"{GLOBAL}:apps"  # hash: app id -> JSON {id, name, created_at}


def global_key(name: str) -> str:
    return f"{GLOBAL}:{name}"


def feed_streams(partitions: int) -> list[str]:
    """Every feed the stream gateway follows, in the fixed order its SSE cursor encodes."""
    return [feed_stream(p) for p in range(partitions)] + [NOTIFY_FEED, SYSTEM_FEED]
