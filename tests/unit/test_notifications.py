"""Pure notification coalescing (shared/notifications.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.notifications import (
    Bell,
    Occurrence,
    Policy,
    coalescing_key,
    expired,
    fingerprint,
    fnv1a64,
    fold,
)
from shared.times import parse_rfc3339

pytestmark = pytest.mark.unit

WINDOW = 100.0
CAP = 3
POLICY = Policy(window_s=WINDOW, occurrences=CAP, max_rows=10, max_age_s=1000)
KEYS = [
    ("run.failed", "ask", "failed"),
    ("run.failed", "chat", "failed"),
    ("deadletter", "aggregator", "dead_letter"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "cbf29ce484222325"), ("a", "af63dc4c8601ec8c"), ("foobar", "85944171f73967e8")],
)
def test_fnv1a64_known_vectors(text: str, expected: str) -> None:
    assert fnv1a64(text) == expected
    assert fnv1a64(text.encode()) == expected


def test_fingerprint_is_fnv_of_the_coalescing_key_without_padding() -> None:
    assert coalescing_key("run.failed", "ask", "failed") == "run.failed|ask|failed"
    assert fingerprint("run.failed", "ask", "failed") == fnv1a64("run.failed|ask|failed")
    # Go's strconv.FormatUint(h, 16): no leading zeros. Find a key whose hash starts with 0.
    short = next(f for i in range(100_000) if len(f := fnv1a64(str(i))) < 16)
    assert not short.startswith("0")


def occurrence(key: int, at: float, n: int, run_id: str | None = None) -> Occurrence:
    kind, task, reason = KEYS[key]
    return Occurrence(
        kind, "error", task, reason, f"{task} failed", f"body {n}", run_id, at, f"d{n}"
    )


def ids() -> itertools.count[int]:
    return itertools.count()


def run_fold(occurrences: list[Occurrence], bell: Bell | None = None) -> Bell:
    counter = ids()
    bell = bell or Bell(open_rows={}, unread=0)
    return fold(
        bell, occurrences, now=10_000.0, policy=POLICY, new_id=lambda: f"id{next(counter):04d}"
    )


# Times on whole milliseconds: what RFC 3339 with millisecond precision can carry exactly.
gaps = st.lists(
    st.tuples(
        st.integers(0, 2), st.integers(0, int(2.5 * WINDOW * 1000)).map(lambda ms: ms / 1000)
    ),
    max_size=40,
)


def reference(events: list[tuple[int, float]]) -> list[list[float]]:
    """Rows as lists of occurrence times: a new row when the gap since the key's last > WINDOW."""
    rows: list[list[float]] = []
    current: dict[int, list[float]] = {}
    for key, at in events:
        row = current.get(key)
        if row is None or round(at * 1000) - round(row[-1] * 1000) > WINDOW * 1000:
            row = []
            rows.append(row)
            current[key] = row
        row.append(at)
    return rows


@settings(max_examples=200, deadline=None)
@given(gaps)
def test_coalescing_matches_the_sliding_window_model(steps: list[tuple[int, float]]) -> None:
    clock_ms, events = 0, []
    for key, gap in steps:
        clock_ms += round(gap * 1000)
        events.append((key, clock_ms / 1000))
    bell = run_fold([occurrence(k, t, n) for n, (k, t) in enumerate(events)])
    expected = reference(events)
    rows = sorted(bell.writes.values(), key=lambda r: r["id"])
    assert len(rows) == len(expected)
    assert sum(r["count"] for r in rows) == len(events)  # count is unbounded, nothing lost
    for row, times in zip(rows, expected, strict=True):
        assert row["count"] == len(times)
        occurred = [parse_rfc3339(t) for t in row["occurrences"]]
        assert occurred == pytest.approx(
            sorted(times, reverse=True)[:CAP], abs=1e-3
        )  # newest first, capped
        assert parse_rfc3339(row["last_occurred_at"]) == pytest.approx(times[-1], abs=1e-3)
        assert row["read_at"] is None
    assert bell.unread == len(rows)
    created = [d for name, d in bell.feed if name == "notification.created"]
    assert len(created) == len(rows)


@settings(max_examples=100, deadline=None)
@given(gaps)
def test_applying_the_same_occurrences_again_changes_nothing(
    steps: list[tuple[int, float]],
) -> None:
    clock, occs = 0.0, []
    for n, (key, gap) in enumerate(steps):
        clock += gap
        occs.append(occurrence(key, clock, n))
    first = run_fold(occs)
    again = Bell(open_rows=dict(first.open_rows), unread=first.unread, applied=set(first.applied))
    second = run_fold(occs, again)
    assert second.writes == {} and second.feed == [] and second.unread == first.unread


def test_repeat_rerenders_and_clears_read_at() -> None:
    bell = run_fold([occurrence(0, 1.0, 1, "r1")])
    row = next(iter(bell.writes.values()))
    read = dict(row, read_at="2026-01-01T00:00:00.000Z")
    bell2 = Bell(open_rows={row["fingerprint"]: read}, unread=0, applied={"d1"})
    run_fold([occurrence(0, 50.0, 2, "r2")], bell2)
    updated = bell2.writes[row["id"]]
    assert updated["count"] == 2 and updated["read_at"] is None
    assert updated["body"] == "body 2" and updated["run_id"] == "r2"
    assert updated["created_at"] == row["created_at"]
    assert bell2.unread == 1
    assert [name for name, _ in bell2.feed] == [
        "notification.updated",
        "notifications.unread_count_changed",
    ]


def test_out_of_order_occurrence_joins_and_keeps_newest_first() -> None:
    bell = run_fold([occurrence(0, 100.0, 1), occurrence(0, 40.0, 2), occurrence(0, 120.0, 3)])
    (row,) = bell.writes.values()
    assert row["count"] == 3
    assert [parse_rfc3339(t) for t in row["occurrences"]] == pytest.approx([120.0, 100.0, 40.0])
    assert parse_rfc3339(row["last_occurred_at"]) == pytest.approx(120.0)


def test_expired_by_count_and_age() -> None:
    policy = Policy(max_rows=3)
    assert expired(["a", "b", "c", "d", "e"], 5, [], policy) == ["a", "b"]
    assert expired(["a"], 2, ["x", "a"], policy) == ["x", "a"]
    assert expired([], 3, [], policy) == []
