"""What each SSE feed carries, and how a feed-stream entry becomes its frames. Pure.

- `/api/events` (LLM Watcher): only `event` entries, as unnamed `data:` messages whose data is
  the DashboardEvent bytes exactly as the aggregator stored them.
- `/api/stream` (RunWisp): every entry as a named event (`event: run.failed` ...), optionally
  filtered by name with `?events=`.
Both carry the entry's cursor as `id:`. `ping` and `reset` are control events, sent whatever the
filter says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import orjson

from services.stream import sse
from shared.cursor import Position, parse_id

EVENT = b"event"
RESET = "reset"
# The names CONTRACT §3 documents; others the aggregator may add (e.g. `deadletter`) pass too.
DOCUMENTED = (
    "run.created", "run.started", "run.completed", "run.failed", "run.updated",
    "system", "config.stale", "notification.created", "notification.updated",
    "notifications.unread_count_changed", "event", "ping", "deadletter",
)  # fmt: skip
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
MAX_NAME = 64
MAX_FILTER_NAMES = 32


class Feed(str, Enum):
    EVENTS = "events"
    STREAM = "stream"


@dataclass(frozen=True, slots=True)
class Entry:
    """One feed-stream entry: where it is in delivery order, its SSE name and JSON payload."""

    pos: Position
    name: bytes
    data: bytes


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and _NAME_RE.fullmatch(name) is not None


def parse_filter(text: str | None) -> frozenset[bytes] | None:
    """`?events=run.failed,system` → the names to keep; None (absent or empty) keeps all."""
    if text is None or not text.strip():
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(names) > MAX_FILTER_NAMES:
        raise ValueError(f"at most {MAX_FILTER_NAMES} event names")
    bad = [n for n in names if not valid_name(n)]
    if bad:
        raise ValueError(f"not an event name: {bad[0][:MAX_NAME]!r}")
    return frozenset(n.encode() for n in names)


def entry(stream: int, raw_id: bytes, fields: dict[bytes, bytes]) -> Entry | None:
    """A feed-stream entry, or None when it is not one we can send (missing or unsafe name)."""
    name, data = fields.get(b"t"), fields.get(b"d")
    if name is None or data is None or not valid_name(name.decode("ascii", "replace")):
        return None
    ms, seq = parse_id(raw_id)
    return Entry(Position(ms, seq, stream), name, sse.json_data(data))


def wants(feed: Feed, names: frozenset[bytes] | None, name: bytes) -> bool:
    if feed is Feed.EVENTS:
        return name == EVENT
    return names is None or name in names


def frames(item: Entry, cursor: str) -> tuple[bytes, bytes | None]:
    """(the `/api/stream` frame, the `/api/events` frame or None), each encoded once."""
    named = sse.frame(item.data, event=item.name, id=cursor)
    unnamed = sse.frame(item.data, id=cursor) if item.name == EVENT else None
    return named, unnamed


def frame_for(feed: Feed, item: Entry, cursor: str) -> bytes:
    if feed is Feed.EVENTS:
        return sse.frame(item.data, id=cursor)
    return sse.frame(item.data, event=item.name, id=cursor)


def reset_frame(reason: str, cursor: str | None) -> bytes:
    """The client's cursor cannot be resumed (older than retention, another Redis or layout,
    unreadable): it should re-read the snapshots (`/api/history`, `/api/system`...). The live
    feed continues right after this frame, whose id (when given) is a fresh cursor."""
    body = orjson.dumps({"reason": reason, "resume": "reload snapshots"})
    return sse.frame(body, event=RESET, id=cursor)
