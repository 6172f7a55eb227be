"""Event history: layout, and the newest-first cursor read that `/api/history` and the SSE
`?snapshot=N` use.

Per partition N (slot `{pN}`), written by the aggregator in the same MULTI as the event's stats:
- `history_ids(N)`: sorted set, every score 0, member = `key(stream id)` (32 hex chars: ms, seq),
  so lexicographic order is arrival order, whatever order replicas commit in;
- `history_data(N)`: hash member -> DashboardEvent JSON (the bytes the SSE `event` feed carries);
- `history_index(N, field, value)` for `event_type`, `source` and `model`: the same members, only
  for that value, so a filtered page reads one index instead of scanning.

Arrival order across partitions is (ms, seq, partition); a cursor `ms-seq-partition` names the
last item of a page. `q` (case-insensitive substring of the event JSON) and a second filter are
checked on read, scanning at most `SCAN_BUDGET` entries per partition per request: a page can
then come back short, with a `next_cursor` to continue from where the scan stopped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import orjson

from shared import keys
from shared.redis import Client, Command, run_commands

INDEXED = ("event_type", "model", "source")
SCAN_BUDGET = 5000
_CHUNK = 500
_NEG = (-1, -1, -1)

# KEYS: index, data. ARGV: upper lex bound, count. Returns member, json (or "") pairs.
_PAGE_LUA = """
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[1], '-', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i, m in ipairs(ids) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m) or ''
end
return out
"""


def key(stream_id: str | bytes) -> str:
    """History member of an event-stream entry id `ms-seq`."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return f"{int(ms):016x}{int(seq or 0):016x}"


def unkey(member: str | bytes) -> tuple[int, int]:
    text = member.decode() if isinstance(member, bytes) else member
    return int(text[:16], 16), int(text[16:32], 16)


def encode_cursor(ms: int, seq: int, partition: int) -> str:
    return f"{ms}-{seq}-{partition}"


def decode_cursor(cursor: str) -> tuple[int, int, int]:
    """`ms-seq-partition` -> tuple; ValueError when malformed."""
    parts = cursor.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError("cursor must look like <ms>-<seq>-<partition>")
    ms, seq, partition = (int(p) for p in parts)
    return ms, seq, partition


@dataclass(frozen=True)
class Query:
    limit: int = 500
    before: tuple[int, int, int] | None = None
    event_type: str | None = None
    model: str | None = None
    source: str | None = None
    q: str | None = None

    def filters(self) -> dict[str, str]:
        return {f: v for f in INDEXED if (v := getattr(self, f)) is not None}

    def matches(self, event: dict[str, Any], raw: bytes) -> bool:
        for field, value in self.filters().items():
            if event.get(field) != value:
                return False
        return not self.q or self.q.lower().encode() in raw.lower()


@dataclass
class _Scan:
    partition: int
    index: str
    upper: str
    items: list[tuple[tuple[int, int, int], dict[str, Any]]]
    scanned: int = 0
    bound: tuple[int, int, int] = _NEG  # everything matching above this was collected
    done: bool = False


def _upper(query: Query, partition: int) -> str:
    if query.before is None:
        return "+"
    ms, seq, cp = query.before
    member = f"{ms:016x}{seq:016x}"
    return ("[" if partition < cp else "(") + member


def _index_for(query: Query, partition: int) -> str:
    filters = query.filters()
    if not filters:
        return keys.history_ids(partition)
    field, value = next(iter(filters.items()))  # event_type, then model, then source
    return keys.history_index(partition, field, value)


def _page_command(scan: _Scan, query: Query, post_filter: bool) -> Command:
    count = max(1, min(_CHUNK if post_filter else query.limit, SCAN_BUDGET - scan.scanned))
    index, data, upper = scan.index, keys.history_data(scan.partition), scan.upper
    return lambda r: r.eval(_PAGE_LUA, 2, index, data, upper, count)


async def read_page(
    redis: Client, partitions: int, query: Query
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest-first events matching `query`, and the cursor of the next page (None at the end)."""
    scans = [_Scan(p, _index_for(query, p), _upper(query, p), []) for p in range(partitions)]
    post_filter = bool(query.q) or len(query.filters()) > 1
    active = scans
    while active:
        # One EVAL per partition and round: pipelined on a single Redis, concurrent on a
        # cluster (each on its partition's shard). EVAL, not EVALSHA: a pipeline of cached
        # scripts would first ask SCRIPT EXISTS, one more round trip than the script text costs.
        replies = await run_commands(
            redis, [_page_command(scan, query, post_filter) for scan in active]
        )
        for scan, reply in zip(active, replies, strict=True):
            _absorb(scan, reply, query, post_filter)
        active = [s for s in scans if not s.done]
    bound = max(s.bound for s in scans)
    merged = heapq.merge(*[s.items for s in scans], key=lambda item: item[0], reverse=True)
    page: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    for order, event in merged:
        if order < bound or len(page) == query.limit:
            break
        page.append((order, event))
    if len(page) == query.limit:
        return [e for _, e in page], encode_cursor(*page[-1][0])
    if bound != _NEG:
        return [e for _, e in page], encode_cursor(*bound)
    return [e for _, e in page], None


def _absorb(scan: _Scan, reply: list[Any], query: Query, post_filter: bool) -> None:
    pairs = list(zip(reply[::2], reply[1::2], strict=True))
    requested = min(_CHUNK if post_filter else query.limit, SCAN_BUDGET - scan.scanned)
    for member, raw in pairs:
        scan.scanned += 1
        ms, seq = unkey(member)
        order = (ms, seq, scan.partition)
        scan.upper = "(" + (member.decode() if isinstance(member, bytes) else member)
        if not raw:
            continue  # trimmed between the index read and the data read
        event = orjson.loads(raw)
        if not post_filter or query.matches(event, raw):
            scan.items.append((order, event))
            if len(scan.items) == query.limit:
                scan.bound, scan.done = order, True
                return
    if len(pairs) < max(1, requested):
        scan.done = True  # the index has nothing older
        return
    if scan.scanned >= SCAN_BUDGET:
        ms, seq = unkey(scan.upper[1:])
        scan.bound, scan.done = (ms, seq, scan.partition), True


async def newest(redis: Client, partitions: int, count: int) -> list[dict[str, Any]]:
    """The `count` newest events, newest first (for SSE `?snapshot=N`)."""
    items, _ = await read_page(redis, partitions, Query(limit=max(1, count)))
    return items[:count]


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
