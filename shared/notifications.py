"""The notification bell (RunWisp in-app notifications), as pure functions.

A *row* is what `GET /api/notifications` shows: `id fingerprint kind severity task_name run_id
title body count occurrences created_at last_occurred_at read_at`. Repeats of the same event fold
into one row instead of flooding the bell:

- the coalescing key is `kind|task_name|end_reason`; `fingerprint` is its 64-bit FNV-1a, lowercase
  hex without padding;
- an occurrence joins the newest row of its fingerprint when it happened no later than
  `window_s` after that row's `last_occurred_at` (the window slides with every repeat);
  otherwise it opens a new row with a new ULID;
- a repeat adds one to `count` (unbounded), puts its time into `occurrences` (newest first,
  capped), moves `last_occurred_at` forward, takes the repeat's `title`/`body`/`severity`/`run_id`
  and clears `read_at`, so an acknowledged problem that comes back rings again.

`notify.py` runs these functions against Redis; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.times import parse_rfc3339, rfc3339

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1

Row = dict[str, Any]


def fnv1a64(data: str | bytes) -> str:
    """64-bit FNV-1a of the UTF-8 bytes, lowercase hex, no zero padding (Go's FormatUint(h, 16))."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    h = FNV64_OFFSET
    for byte in raw:
        h = ((h ^ byte) * FNV64_PRIME) & _MASK64
    return format(h, "x")


def coalescing_key(kind: str, task_name: str, end_reason: str) -> str:
    return f"{kind}|{task_name}|{end_reason}"


def fingerprint(kind: str, task_name: str, end_reason: str) -> str:
    return fnv1a64(coalescing_key(kind, task_name, end_reason))


@dataclass(frozen=True)
class Occurrence:
    """One thing worth ringing the bell for. `dedup_id` names its cause (e.g. the event id), so
    applying the same occurrence twice (a redelivered event) counts it once."""

    kind: str
    severity: str
    task_name: str
    end_reason: str
    title: str
    body: str
    run_id: str | None
    occurred_at: float  # epoch seconds
    dedup_id: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.task_name, self.end_reason)


@dataclass(frozen=True)
class Policy:
    window_s: float = 3600.0
    occurrences: int = 10
    max_rows: int = 1024
    max_age_s: float = 90 * 24 * 3600.0


def last_occurred(row: Row) -> float:
    return parse_rfc3339(row.get("last_occurred_at")) or 0.0


def joins(row: Row | None, occ: Occurrence, window_s: float) -> bool:
    """Does `occ` fold into `row`? Same fingerprint and within the window after its last one."""
    if row is None or row.get("fingerprint") != occ.fingerprint:
        return False
    # In whole milliseconds, the precision timestamps are stored with.
    return round((occ.occurred_at - last_occurred(row)) * 1000) <= round(window_s * 1000)


def new_row(occ: Occurrence, row_id: str, now: float) -> Row:
    return {
        "id": row_id,
        "fingerprint": occ.fingerprint,
        "kind": occ.kind,
        "severity": occ.severity,
        "task_name": occ.task_name,
        "run_id": occ.run_id,
        "title": occ.title,
        "body": occ.body,
        "count": 1,
        "occurrences": [rfc3339(occ.occurred_at)],
        "created_at": rfc3339(now),
        "last_occurred_at": rfc3339(occ.occurred_at),
        "read_at": None,
    }


def repeat(row: Row, occ: Occurrence, cap: int) -> Row:
    """`row` with one more occurrence (the caller checked `joins`)."""
    times = sorted(
        [occ.occurred_at, *(parse_rfc3339(t) or 0.0 for t in row.get("occurrences", []))],
        reverse=True,
    )[: max(1, cap)]
    newest = occ.occurred_at >= last_occurred(row)
    updated = dict(row)
    updated.update(
        count=int(row.get("count", 0)) + 1,
        occurrences=[rfc3339(t) for t in times],
        title=occ.title,
        body=occ.body,
        severity=occ.severity,
        read_at=None,
    )
    if newest:
        updated["last_occurred_at"] = rfc3339(occ.occurred_at)
        updated["run_id"] = occ.run_id if occ.run_id is not None else row.get("run_id")
    return updated


@dataclass
class Bell:
    """What the fold needs to know about the stored bell, and what it changes."""

    open_rows: dict[str, Row]  # fingerprint -> its newest row (only the fingerprints in play)
    unread: int  # current unread count
    applied: set[str] = field(default_factory=set)  # dedup ids already applied
    writes: dict[str, Row] = field(default_factory=dict)  # row id -> row to store
    newly_unread: set[str] = field(default_factory=set)  # row ids to add to the unread index
    applied_now: list[str] = field(default_factory=list)
    feed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (SSE name, payload)


def fold(
    bell: Bell,
    occurrences: Iterable[Occurrence],
    *,
    now: float,
    policy: Policy,
    new_id: Callable[[], str],
) -> Bell:
    """Apply occurrences in order; record the rows to write and the feed entries to publish."""
    for occ in occurrences:
        if occ.dedup_id in bell.applied:
            continue
        bell.applied.add(occ.dedup_id)
        bell.applied_now.append(occ.dedup_id)
        current = bell.open_rows.get(occ.fingerprint)
        if joins(current, occ, policy.window_s):
            assert current is not None
            was_read = current.get("read_at") is not None
            row, kind = repeat(current, occ, policy.occurrences), "notification.updated"
        else:
            was_read = True  # a new row is a new unread one
            row, kind = new_row(occ, new_id(), now), "notification.created"
        bell.open_rows[occ.fingerprint] = row
        bell.writes[row["id"]] = row
        if was_read:
            bell.unread += 1
            bell.newly_unread.add(row["id"])
        bell.feed.append((kind, {"notification": row, "unread_count": bell.unread}))
        if was_read:
            bell.feed.append(("notifications.unread_count_changed", {"unread_count": bell.unread}))
    return bell


def expired(
    oldest_ids: list[str],
    total: int,
    aged_ids: list[str],
    policy: Policy,
) -> list[str]:
    """Rows to drop: beyond `max_rows` (oldest ids first; ULIDs sort by creation) and rows whose
    last occurrence is older than `max_age_s` (found by the caller from its age index)."""
    over = max(0, total - policy.max_rows)
    drop = list(dict.fromkeys([*oldest_ids[:over], *aged_ids]))
    return drop
