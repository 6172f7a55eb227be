"""The pure batch fold (services/aggregator/fold.py) and event mapping (events.py)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import events as ev
from services.aggregator.fold import fold, prepare
from shared import history, stats
from tests.aggregator_support import llmonitor, webhook

pytestmark = pytest.mark.unit


def entries(events: list[dict[str, Any]], start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"{1_700_000_000_000 + start + i}-0", orjson.dumps(e)) for i, e in enumerate(events)]


def test_counters_are_pre_aggregated_one_field_each() -> None:
    batch = [
        webhook("completion", "completed", metadata={"tokens": 10, "duration_ms": 100})
        for _ in range(50)
    ]
    writes = fold(prepare(entries(batch)), set(), {})
    assert writes.applied == 50 and len(writes.history) == 50 and len(writes.markers) == 50
    assert writes.stats[stats.TOTAL] == 50
    assert writes.stats[stats.event_type("completion")] == 50
    assert writes.stats[stats.TOKENS_COMPLETION] == 500
    assert writes.stats[stats.model("gpt-4o", "tc")] == 500
    assert writes.stats[stats.model("gpt-4o", "dn")] == 50
    assert writes.stats[stats.model("gpt-4o", "ds")] == 5000
    assert writes.stats[stats.COST] == 500 * 10_000  # $10 per million output tokens, in nano-USD
    assert len(writes.stats) == len(set(writes.stats))  # a dict: one increment per field
    assert writes.feed == []  # every history item is an `event` feed entry; no run entries


def test_webhook_token_rules() -> None:
    given = webhook(metadata={"prompt_tokens": 7, "completion_tokens": 3, "tokens": 99})
    event = ev.parse("1-0", orjson.dumps(given))
    assert ev.webhook_tokens(event) == (7, 3)
    assert ev.webhook_tokens(ev.parse("1-0", orjson.dumps(webhook(metadata={"tokens": 9})))) == (
        0,
        9,
    )
    assert ev.webhook_tokens(ev.parse("1-0", orjson.dumps(webhook(metadata={"tokens": "x"})))) == (
        0,
        0,
    )
    top = webhook()
    top["duration_ms"] = 850
    assert ev.duration_ms(ev.parse("1-0", orjson.dumps(top))) == 850.0
    assert (
        ev.duration_ms(ev.parse("1-0", orjson.dumps(webhook(metadata={"duration_ms": -1})))) is None
    )


def test_duplicates_and_already_applied_events_are_skipped_but_acked() -> None:
    one = webhook()
    batch = entries([one, one, webhook()])
    writes = fold(prepare(batch), set(), {})
    assert writes.applied == 2 and writes.duplicates == 1
    assert writes.done == [sid for sid, _ in batch]
    again = fold(prepare(batch), set(writes.markers), {})
    assert again.applied == 0 and again.duplicates == 3 and again.stats == {} and again.feed == []


def test_a_bad_entry_does_not_block_the_batch() -> None:
    good = entries([webhook(), webhook()])
    batch = [
        good[0],
        ("1700000000005-0", b"not json"),
        ("1700000000006-0", b'{"no": "id"}'),
        good[1],
    ]
    writes = fold(prepare(batch), set(), {})
    assert writes.applied == 2
    assert [sid for sid, _ in writes.failed] == ["1700000000005-0", "1700000000006-0"]
    assert writes.done == [good[0][0], good[1][0]]


def test_nameless_llmonitor_event_takes_its_runs_name() -> None:
    start = llmonitor("start", "r1", name="gpt-4o")
    end = llmonitor(
        "end",
        "r1",
        timestamp="2026-01-01T00:00:01.000Z",
        tokensUsage={"prompt": 1, "completion": 2},
    )
    first = fold(prepare(entries([start])), set(), {})
    stored = {r: (c.facts, c.view) for r, c in first.runs.items()}
    second = fold(prepare(entries([end], 1)), set(), stored)
    (_, raw, indexes) = second.history[0]
    event = orjson.loads(raw)
    assert event["command"] == "llm:gpt-4o" and event["model"] == "gpt-4o"
    assert ("model", "gpt-4o") in indexes
    assert [name for name, _ in second.feed] == ["run.completed"]


def test_nameless_event_of_unknown_run_keeps_its_type_only_command() -> None:
    end = llmonitor("end", "r9")
    writes = fold(prepare(entries([end])), set(), {})
    event = orjson.loads(writes.history[0][1])
    assert event["command"] == "llm" and event["model"] is None
    assert writes.history[0][1] == orjson.dumps(end)  # unchanged bytes are reused, not re-encoded


def test_run_lifecycle_feed_and_counts_in_one_batch() -> None:
    batch = [
        llmonitor("start", "r1", name="gpt-4o"),
        llmonitor("end", "r1", timestamp="2026-01-01T00:00:01.000Z"),
    ]
    writes = fold(prepare(entries(batch)), set(), {})
    names = [name for name, _ in writes.feed]
    assert names == ["run.created", "run.started", "run.completed"]
    payload = orjson.loads(dict(writes.feed)["run.completed"])
    assert payload["run"]["status"] == "ended" and payload["run"]["duration_ms"] == 1000
    assert writes.stats[stats.runs("completed")] == 1 and stats.runs("running") not in writes.stats


def test_failures_raise_notifications_once_per_cause() -> None:
    batch = [
        webhook(
            "error",
            "failed",
            command="ask",
            metadata={"error": "connection refused", "session_id": "s"},
        ),
        llmonitor("start", "t1", type="tool", name="get_weather"),
        llmonitor(
            "error",
            "t1",
            type="tool",
            timestamp="2026-01-01T00:00:01.000Z",
            error={"message": "timeout"},
        ),
        llmonitor(
            "error",
            "t1",
            type="tool",
            timestamp="2026-01-01T00:00:02.000Z",
            error={"message": "again"},
        ),
    ]
    writes = fold(prepare(entries(batch)), set(), {})
    occ = writes.occurrences
    assert [(o.kind, o.task_name, o.body) for o in occ] == [
        ("run.failed", "ask", "connection refused"),
        ("run.failed", "get_weather", "timeout"),
    ]
    assert occ[0].dedup_id == batch[0]["id"] and occ[1].run_id == "t1"
    failed = [orjson.loads(data) for name, data in writes.feed if name == "run.failed"]
    assert [(f["run"]["id"], f["error"]) for f in failed] == [
        ("s", {"message": "connection refused"}),  # the webhook session run
        ("t1", {"message": "again"}),  # one run.failed per run and batch, with its latest error
    ]


def test_history_indexes_and_eps_seconds() -> None:
    batch = [webhook(model=None), webhook("completion", "completed")]
    writes = fold(prepare(entries(batch)), set(), {})
    assert writes.history[0][2] == [("event_type", "request"), ("source", "webhook")]
    assert ("model", "gpt-4o") in writes.history[1][2]
    assert writes.eps == {1_700_000_000: 2}
    assert [m for m, _, _ in writes.history] == [
        history.key(f"{1_700_000_000_000 + i}-0") for i in range(2)
    ]
    assert writes.since_ms == 1_700_000_000_000


# --- any batching of any mix: one result --------------------------------------------------
MODELS = ["gpt-4o", "gpt-4o-mini", None, "qwen2.5-coder:latest"]
STAMPS = [f"2026-01-01T00:00:0{i}.000Z" for i in range(5)]


@st.composite
def mixed_event(draw: st.DrawFn) -> dict[str, Any]:
    stamp = draw(st.sampled_from(STAMPS))
    if draw(st.booleans()):
        meta: dict[str, Any] = {}
        if draw(st.booleans()):
            meta["session_id"] = draw(st.sampled_from(["s1", "s2"]))
        meta["tokens"] = draw(st.integers(0, 300))
        if draw(st.booleans()):
            meta["duration_ms"] = draw(st.floats(0, 5000))
        kind, status = draw(
            st.sampled_from(
                [("request", "start"), ("completion", "completed"), ("error", "failed")]
            )
        )
        model = draw(st.sampled_from(MODELS))
        return webhook(kind, status, model=model, metadata=meta, timestamp=stamp)
    event = draw(st.sampled_from(["start", "end", "error", "feedback"]))
    fields: dict[str, Any] = {}
    if event == "end" and draw(st.booleans()):
        fields["tokensUsage"] = {"prompt": draw(st.integers(0, 50)), "completion": 3}
    if event == "feedback":
        fields["feedback"] = {"thumbs": draw(st.sampled_from(["up", "down"]))}
    name = draw(st.sampled_from([None, "gpt-4o", "search"])) if event == "start" else None
    run = draw(st.sampled_from(["r1", "r2"]))
    return llmonitor(event, run, type="llm", name=name, timestamp=stamp, **fields)


def folded(items: list[tuple[str, bytes]], cuts: list[int]) -> tuple[Any, ...]:
    """Fold in batches split at `cuts`, carrying runs and markers like the store does."""
    stored: dict[str, Any] = {}
    applied: set[str] = set()
    totals: dict[str, int] = {}
    history: list[str] = []
    bounds = [0, *sorted(set(cuts)), len(items)]
    for lo, hi in itertools.pairwise(bounds):
        writes = fold(prepare(items[lo:hi]), set(applied), dict(stored))
        assert not writes.failed
        for run_id, change in writes.runs.items():
            stored[run_id] = (change.facts, change.view)
        applied |= set(writes.markers)
        history += [member for member, _, _ in writes.history]
        for name, amount in writes.stats.items():
            totals[name] = totals.get(name, 0) + amount
    views = {r: view for r, (_, view) in stored.items()}
    return views, {k: v for k, v in totals.items() if v}, sorted(history)


@settings(max_examples=80, deadline=None)
@given(events=st.lists(mixed_event(), min_size=1, max_size=12), data=st.data())
def test_any_batching_of_a_mixed_stream_gives_one_result(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    resent = data.draw(st.lists(st.sampled_from(events), max_size=3))  # same ids, new entries
    items = entries(events + resent)
    cuts = data.draw(st.lists(st.integers(0, len(items)), max_size=4))
    views, totals, history = folded(items, cuts)
    assert (views, totals, history) == folded(items, [])
    assert totals[stats.TOTAL] == len({e["id"] for e in events}) == len(history)


def test_the_run_of_an_event() -> None:
    def run(event: dict[str, Any]) -> Any:
        return ev.parse("1-0", orjson.dumps(event)).run

    assert run(llmonitor("start", "r1", parentRunId="p")) == ("r1", "llmonitor", "p")
    assert run(llmonitor("end", "r1")) == ("r1", "llmonitor", None)
    nameless = llmonitor("end", "r1")
    del nameless["metadata"]["runId"]
    assert run(nameless) is None  # an LLMonitor event without a run id belongs to none
    assert run(webhook(metadata={"session_id": "s"})) == ("s", "session", None)
    top = webhook()
    top["session_id"] = 7
    assert run(top) == ("7", "session", None)
    assert run(webhook(metadata={"session_id": ""})) is None
