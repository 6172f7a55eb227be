"""The SSE cursor: one short, header-safe token that any gateway replica can resume from.

Every feed entry has a *canonical position* `(ms, seq, idx)`: its Redis stream id and the index
of its stream in `keys.feed_streams(partitions)`. The gateway delivers entries in that order
(it holds an entry back until the Redis clock has moved past it, see `safe_bound`), so one
position says, for every feed stream at once, what a client has seen: on stream `j` everything up
to `(ms, seq)` when `j <= idx`, and everything strictly below `(ms, seq)` when `j > idx`
(`covered`). The position does not depend on which replica served the entry, so two replicas
give the same ids and a client resumes on either.

Wire form: `1<epoch>.<partitions>.<ms>.<seq>.<idx>`, numbers in base 36, alphabet `[0-9a-z.]`,
so it can never carry CR/LF into a header. The leading `1` is the format version; `epoch` names
one life of the Redis keyspace (a wiped Redis gets a new one) and `partitions` the stream layout:
a cursor whose epoch or partition count differs from the gateway's is answered with `reset`.

Pure: no I/O. The gateway's reader and replay use these functions; the tests fuzz them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

FORMAT = "1"
MAX_SEQ = (1 << 64) - 1
MAX_MS = (1 << 64) - 1
MAX_TEXT = 96  # longer than any cursor we issue: refuse before the regex sees it
EPOCH_RE = re.compile(r"[0-9a-z]{1,16}")
_CURSOR_RE = re.compile(
    r"1([0-9a-z]{1,16})\.([0-9a-z]{1,4})\.([0-9a-z]{1,13})\.([0-9a-z]{1,13})\.([0-9a-z]{1,4})"
)
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

StreamId = tuple[int, int]  # (ms, seq)
NOTHING: StreamId = (0, 0)  # "no entry of this stream covered": Redis never issues 0-0


class CursorError(ValueError):
    """The text is not a cursor this code issued (garbage, truncated, other format)."""


class Position(NamedTuple):
    """Canonical position of one feed entry. Tuples compare in exactly the delivery order."""

    ms: int
    seq: int
    idx: int

    @property
    def stream_id(self) -> StreamId:
        return (self.ms, self.seq)


@dataclass(frozen=True)
class Cursor:
    epoch: str
    partitions: int
    position: Position


def _b36(value: int) -> str:
    if value == 0:
        return "0"
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits))


def prefix(epoch: str, partitions: int) -> str:
    """The part shared by every cursor of one epoch and layout (the reader computes it once)."""
    if not EPOCH_RE.fullmatch(epoch):
        raise ValueError(f"invalid epoch {epoch!r}")
    return f"{FORMAT}{epoch}.{_b36(partitions)}."


def encode_at(head: str, pos: Position) -> str:
    return f"{head}{_b36(pos.ms)}.{_b36(pos.seq)}.{_b36(pos.idx)}"


def encode(cursor: Cursor) -> str:
    return encode_at(prefix(cursor.epoch, cursor.partitions), cursor.position)


def decode(text: str) -> Cursor:
    """Parse a cursor; anything this code did not issue raises CursorError (never another error)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise CursorError("not a cursor")
    match = _CURSOR_RE.fullmatch(text)
    if match is None:
        raise CursorError("not a cursor")
    epoch, parts, ms, seq, idx = match.groups()
    partitions, pos = int(parts, 36), Position(int(ms, 36), int(seq, 36), int(idx, 36))
    if partitions < 1 or pos.ms > MAX_MS or pos.seq > MAX_SEQ or pos.idx >= partitions + 2:
        raise CursorError("cursor out of range")
    return Cursor(epoch, partitions, pos)


# --- stream ids ---------------------------------------------------------------------------------
def parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq or 0))


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def successor(sid: StreamId) -> StreamId:
    """The smallest stream id above `sid` (an inclusive XRANGE start for "after sid")."""
    ms, seq = sid
    return (ms, seq + 1) if seq < MAX_SEQ else (ms + 1, 0)


def predecessor(sid: StreamId) -> StreamId:
    """The largest stream id below `sid`, or NOTHING."""
    ms, seq = sid
    if seq > 0:
        return (ms, seq - 1)
    return (ms - 1, MAX_SEQ) if ms > 0 else NOTHING


# --- positions ----------------------------------------------------------------------------------
def covered(pos: Position, stream: int) -> StreamId:
    """The last stream id of `stream` at or before `pos` in delivery order (NOTHING if none)."""
    return pos.stream_id if stream <= pos.idx else predecessor(pos.stream_id)


def vector(pos: Position, streams: int) -> list[StreamId]:
    """Per feed stream, the last id a client that has seen everything up to `pos` has seen."""
    return [covered(pos, j) for j in range(streams)]


def advance(after: list[StreamId], pos: Position) -> list[StreamId]:
    """`after` once everything up to `pos` has been seen (never moves a stream backwards)."""
    return [max(a, covered(pos, j)) for j, a in enumerate(after)]


def is_seen(after: list[StreamId], pos: Position) -> bool:
    """Was the entry at `pos` already seen by a client whose per-stream progress is `after`?"""
    return pos.stream_id <= after[pos.idx]


def horizon(after: list[StreamId]) -> Position:
    """The smallest position past which nothing in `after` can still hide a seen entry."""
    return max(Position(ms, seq, j) for j, (ms, seq) in enumerate(after))


def watermark(server_ms: int, streams: int) -> Position:
    """Everything with ms < server_ms is in Redis already (stream ids take the server clock)."""
    return Position(max(server_ms - 1, 0), MAX_SEQ, streams - 1)


def safe_bound(server_ms: int, streams: int, truncated: list[Position]) -> Position:
    """What a reader may deliver: entries at or below this position can no longer be preceded
    by an entry it has not read. `truncated` holds, for each stream whose last read hit its COUNT
    limit, the position of the last entry read (more may follow it on that stream)."""
    return min([watermark(server_ms, streams), *truncated])


def lost(
    start: StreamId, *, first: StreamId | None, max_deleted: StreamId | None, length: int, cap: int
) -> bool:
    """Were entries at or after `start` trimmed from a stream (so a replay from there has a gap)?

    Redis 7+ reports `max-deleted-entry-id`, which answers exactly. Redis 6.2 does not: there a
    stream that has reached its cap has been trimmed (approximate MAXLEN never trims below it),
    and then a start below its first entry means the entries in between are gone.
    """
    if max_deleted is not None:
        return max_deleted >= start
    return first is not None and first > start and length >= cap
