"""What each SSE feed carries, and how a feed-stream entry becomes its frames. Pure.

- `/api/events` (LLM Watcher): only `event` entries, as unnamed `data:` messages whose data is
  the DashboardEvent bytes exactly as the aggregator stored them.
- `/api/stream` (RunWisp): every entry as a named event (`event: run.failed` ...), optionally
  filtered by name with `?events=`.
Both carry a cursor as `id:` (`shared/cursor.py`). `ping` and `reset` are control events, sent
whatever the filter says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import orjson

from services.stream import sse
from shared.cursor import StreamId

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
    """One feed-stream entry: its stream (index in `keys.feed_streams`), id, SSE name and JSON
    payload. An empty name marks an entry that is passed over (not one we can send)."""

    stream: int
    id: StreamId
    name: bytes
    data: bytes


class Frame:
    """One entry ready to send, encoded once and shared by every subscriber's queue: `cursor` is
    the sender's vector after this entry; `named` for `/api/stream`, `unnamed` for `/api/events`
    (None unless it is an `event`)."""

    __slots__ = ("cursor", "entry", "named", "unnamed")

    def __init__(self, entry: Entry, cursor: str, named: bytes, unnamed: bytes | None) -> None:
        self.entry = entry
        self.cursor = cursor
        self.named = named
        self.unnamed = unnamed


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


def entry(stream: int, sid: StreamId, fields: dict[bytes, bytes]) -> Entry:
    """A feed-stream entry; one we cannot send (missing or unsafe name) gets an empty name: it
    is passed over, but a cursor still moves past it."""
    name, data = fields.get(b"t"), fields.get(b"d")
    if name is None or data is None or not valid_name(name.decode("ascii", "replace")):
        return Entry(stream, sid, b"", b"")
    return Entry(stream, sid, name, sse.json_data(data))


def wants(feed: Feed, names: frozenset[bytes] | None, name: bytes) -> bool:
    if not name:
        return False  # passed over
    if feed is Feed.EVENTS:
        return name == EVENT
    return names is None or name in names


def frames(item: Entry, cursor: str) -> Frame:
    """The `/api/stream` frame and (for `event` entries) the `/api/events` one, encoded once."""
    named = sse.frame(item.data, event=item.name, id=cursor)
    unnamed = sse.frame(item.data, id=cursor) if item.name == EVENT else None
    return Frame(item, cursor, named, unnamed)


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
