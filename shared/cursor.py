"""The SSE cursor: a short, header-safe token that says, for every feed stream, the last entry a
client has seen there, so that any gateway replica can resume it.

The gateway follows the feed streams of `keys.feed_streams(partitions)` (each partition's feed,
then `{notify}`, then `{system}`). Entries of one stream come in their stream-id order; streams
are independent (on a Redis Cluster they live on different shards, with no common clock). So a
client's progress is a *vector*: per stream, the id of the last entry it has seen (or NOTHING).
Resuming from it replays, per stream, what came after that id: no gap, no repeat, whichever
replica served the earlier frames and in whatever order it interleaved the streams.

Wire form: `2<epoch>.<P>.<base>` then one `.<segment>` per stream, numbers in base 36, alphabet
`[0-9a-z.-]`, so it can never carry CR/LF into a header. The leading `2` is the format version;
`epoch` names one life of the Redis keyspace (a wiped Redis gets a new one) and `P` the partition
count: a cursor whose epoch or layout differs from the gateway's is answered with `reset`.
A segment is empty for NOTHING, else `base - ms` (the entry id's milliseconds below `base`, which
is at or above every ms of the vector), then `-<seq>` when the sequence is not 0. Busy streams sit
close to `base`: about 4-5 bytes per stream, e.g. 40 bytes for one partition, ~5 KB for 1,024.

Pure: no I/O. The gateway's reader and replay use these functions; the tests fuzz them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FORMAT = "2"
MAX_SEQ = (1 << 64) - 1
MAX_MS = (1 << 64) - 1
MAX_PARTITIONS = 1024  # = the bound of `Settings.partitions`
EPOCH_RE = re.compile(r"[0-9a-z]{1,16}")
_NUM = r"0|[1-9a-z][0-9a-z]{0,12}"  # base 36, canonical (no leading zero), at most 13 digits
_HEAD_RE = re.compile(rf"2([0-9a-z]{{1,16}})\.({_NUM})\.({_NUM})")
_SEGMENT_RE = re.compile(rf"(?:({_NUM})(?:-([1-9a-z][0-9a-z]{{0,12}}))?)?")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # two digits at a time
REBASE_MS = 1000  # an Encoder's base runs this far ahead, so it moves about once a second
BLOCK = 32  # an Encoder re-joins one block of this many segments per change

StreamId = tuple[int, int]  # (ms, seq)
NOTHING: StreamId = (0, 0)  # "no entry of this stream seen": Redis never issues 0-0
Vector = tuple[StreamId, ...]


class CursorError(ValueError):
    """The text is not a cursor this code issued (garbage, truncated, other format)."""


@dataclass(frozen=True)
class Cursor:
    epoch: str
    partitions: int
    vector: Vector  # one stream id per stream of keys.feed_streams(partitions)


def stream_count(partitions: int) -> int:
    """Feed streams of a layout: the partitions' feeds, `{notify}` and `{system}`."""
    return partitions + 2


def max_text(partitions: int) -> int:
    """The longest cursor a layout can have (every number at its 13-digit maximum)."""
    return len(f"2{'z' * 16}.{'z' * 13}.{'z' * 13}") + stream_count(partitions) * (1 + 13 + 1 + 13)


MAX_TEXT = max_text(MAX_PARTITIONS)  # longer text is refused before any parsing


def _b36(value: int) -> str:
    if value < 1296:
        return _PAIRS[value].lstrip("0") or "0"
    pairs = []
    while value >= 1296:
        value, rem = divmod(value, 1296)
        pairs.append(_PAIRS[rem])
    pairs.append(_PAIRS[value].lstrip("0"))
    return "".join(reversed(pairs))


def prefix(epoch: str, partitions: int) -> str:
    """`2<epoch>.<P>.`: the part shared by every cursor of one epoch and layout."""
    if not EPOCH_RE.fullmatch(epoch):
        raise ValueError(f"invalid epoch {epoch!r}")
    return f"{FORMAT}{epoch}.{_b36(partitions)}."


def segment(base: int, sid: StreamId) -> str:
    ms, seq = sid
    if not ms and not seq:
        return ""
    return f"{_b36(base - ms)}-{_b36(seq)}" if seq else _b36(base - ms)


def encode(cursor: Cursor) -> str:
    if len(cursor.vector) != stream_count(cursor.partitions):
        raise ValueError("vector length does not match the layout")
    base = max(ms for ms, _ in cursor.vector)
    body = ".".join(segment(base, sid) for sid in cursor.vector)
    return f"{prefix(cursor.epoch, cursor.partitions)}{_b36(base)}.{body}"


def decode(text: str) -> Cursor:
    """Parse a cursor; anything this code did not issue raises CursorError (never another error)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT or not text.isascii():
        raise CursorError("not a cursor")
    parts = text.split(".")
    head = _HEAD_RE.fullmatch(".".join(parts[:3]))
    if head is None:
        raise CursorError("not a cursor")
    epoch, p_text, base_text = head.groups()
    partitions, base = int(p_text, 36), int(base_text, 36)
    segments = parts[3:]
    if not 1 <= partitions <= MAX_PARTITIONS or len(segments) != stream_count(partitions):
        raise CursorError("cursor does not match its layout")
    if base > MAX_MS:
        raise CursorError("cursor out of range")
    vector = []
    for seg in segments:
        match = _SEGMENT_RE.fullmatch(seg)
        if match is None:
            raise CursorError("not a cursor")
        delta, seq = match.groups()
        if delta is None:
            vector.append(NOTHING)
            continue
        sid = (base - int(delta, 36), int(seq, 36) if seq else 0)
        if sid[0] < 0 or sid[1] > MAX_SEQ or sid == NOTHING:
            raise CursorError("cursor out of range")
        vector.append(sid)
    return Cursor(epoch, partitions, tuple(vector))


class Encoder:
    """The text of a vector that moves one stream at a time, re-encoding only what changed: the
    stream's segment and its block of BLOCK segments, then a join of the blocks. `base` runs
    REBASE_MS ahead of the largest ms, so all segments are re-encoded about once a second only.
    Never moves a stream backwards. Pure (no I/O)."""

    __slots__ = (
        "_base",
        "_blocks",
        "_dirty",
        "_head",
        "_segments",
        "_text",
        "partitions",
        "vector",
    )

    def __init__(self, epoch: str, partitions: int, vector: Iterable[StreamId]) -> None:
        self.partitions = partitions
        self.vector = list(vector)
        if len(self.vector) != stream_count(partitions):
            raise ValueError("vector length does not match the layout")
        self._head = prefix(epoch, partitions)
        self._rebase(max(ms for ms, _ in self.vector) + REBASE_MS)

    def _rebase(self, base: int) -> None:
        self._base = min(base, MAX_MS)
        self._segments = [segment(self._base, sid) for sid in self.vector]
        self._blocks = [
            "".join("." + s for s in self._segments[i : i + BLOCK])
            for i in range(0, len(self._segments), BLOCK)
        ]
        self._dirty: set[int] = set()
        self._text: str | None = None

    def set_epoch(self, epoch: str) -> None:
        self._head = prefix(epoch, self.partitions)
        self._text = None

    def advance(self, stream: int, sid: StreamId) -> None:
        """The client (or the hub) has now seen `sid` on `stream`."""
        if sid <= self.vector[stream]:
            return
        self.vector[stream] = sid
        if sid[0] > self._base:
            self._rebase(sid[0] + REBASE_MS)
            return
        self._segments[stream] = segment(self._base, sid)
        self._dirty.add(stream // BLOCK)
        self._text = None

    def text(self) -> str:
        if self._text is None:
            for block in self._dirty:
                start = block * BLOCK
                self._blocks[block] = "".join(
                    "." + s for s in self._segments[start : start + BLOCK]
                )
            self._dirty.clear()
            self._text = f"{self._head}{_b36(self._base)}{''.join(self._blocks)}"
        return self._text


# --- vectors ------------------------------------------------------------------------------------
def ahead(client: Sequence[StreamId], hub: Sequence[StreamId]) -> dict[int, StreamId]:
    """Streams on which a client has seen more than the hub has delivered (it comes from a
    replica that was further on, or from a snapshot read after the hub's last entry)."""
    return {j: c for j, (c, h) in enumerate(zip(client, hub, strict=True)) if c > h}


def merged(hub: Sequence[StreamId], client: dict[int, StreamId]) -> list[StreamId]:
    """The hub's vector with the streams on which the client is further on taken from it."""
    out = list(hub)
    for j, sid in client.items():
        out[j] = max(out[j], sid)
    return out


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
