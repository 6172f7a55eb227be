"""Run facts merge in any order to the same run (services/aggregator/runs.py, fold.py)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import runs
from services.aggregator.events import parse
from services.aggregator.fold import fold, prepare
from tests.aggregator_support import llmonitor, webhook

pytestmark = pytest.mark.unit

T0, T1, T2, T3 = (f"2026-01-01T00:00:0{i}.000Z" for i in range(4))
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def llm_run() -> list[dict[str, Any]]:
    return [
        llmonitor(
            "start",
            "r1",
            name="gpt-4o",
            timestamp=T0,
            input=MESSAGES,
            tags=["a"],
            parentRunId="agent-1",
            extra={"temperature": 0.2},
        ),
        llmonitor(
            "end",
            "r1",
            timestamp=T2,
            output={"role": "assistant", "content": "Sunny."},
            tokensUsage={"prompt": 24, "completion": 5},
            parentRunId="agent-1",
        ),
        llmonitor("feedback", "r1", timestamp=T3, feedback={"thumbs": "up"}, tags=["b"]),
        llmonitor("update", "r1", timestamp=T1, feedback={"comment": "ok"}),
    ]


def failing_tool() -> list[dict[str, Any]]:
    return [
        llmonitor(
            "start", "t1", type="tool", name="get_weather", timestamp=T0, input={"city": "Paris"}
        ),
        llmonitor("error", "t1", type="tool", timestamp=T1, error={"message": "timeout"}),
        llmonitor("end", "t1", type="tool", timestamp=T2, output="late"),
    ]


def session() -> list[dict[str, Any]]:
    meta = {"session_id": "s1"}
    return [
        webhook(
            "request", "start", command="chat", timestamp=T0, metadata={**meta, "prompt": "hi"}
        ),
        webhook(
            "streaming",
            "running",
            command="chat",
            timestamp=T1,
            metadata={**meta, "tokens_so_far": 3},
        ),
        webhook(
            "completion", "completed", command="chat", timestamp=T2, metadata={**meta, "tokens": 64}
        ),
        webhook("system", "completed", command="chat", model=None, timestamp=T3, metadata=meta),
    ]


def entries(events: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    return [(f"{1_700_000_000_000 + i}-0", orjson.dumps(e)) for i, e in enumerate(events)]


def merged(events: list[dict[str, Any]]) -> runs.Facts:
    facts: runs.Facts | None = None
    for stream_id, raw in entries(events):
        event = parse(stream_id, raw)
        run_id, kind, _ = runs.run_of(event)  # type: ignore[misc]
        facts = runs.merge(facts or runs.new_facts(run_id, kind), event)
    assert facts is not None
    return facts


def in_batches(
    events: list[dict[str, Any]], cuts: list[int]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Fold `events` in batches split at `cuts`, carrying runs between batches like the store."""
    stored: dict[str, tuple[runs.Facts, dict[str, Any]]] = {}
    totals: dict[str, int] = {}
    items = entries(events)
    bounds = [0, *sorted(set(cuts)), len(items)]
    for lo, hi in itertools.pairwise(bounds):
        writes = fold(prepare(items[lo:hi]), set(), stored)
        assert not writes.failed
        for run_id, change in writes.runs.items():
            stored[run_id] = (change.facts, change.view)
        for field, amount in writes.stats.items():
            totals[field] = totals.get(field, 0) + amount
    return {r: view for r, (_, view) in stored.items()}, {k: v for k, v in totals.items() if v}


@pytest.mark.parametrize("make", [llm_run, failing_tool, session])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_order_any_batching_gives_the_same_run_and_stats(
    make: Any, data: st.DataObject
) -> None:
    events = make()
    order = data.draw(st.permutations(events))
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=3))
    expected_views, expected_totals = in_batches(events, [])
    views, totals = in_batches(list(order), cuts)
    assert views == expected_views
    assert totals == expected_totals


def test_llm_run_fields() -> None:
    view = runs.render(merged(llm_run()))
    assert view["task_name"] == "gpt-4o" and view["type"] == "llm" and view["app"] == "app-1"
    assert (view["status"], view["end_reason"]) == ("ended", "success")
    assert view["start_at"] == T0 and view["end_at"] == T2 and view["duration_ms"] == 2000
    assert view["parent_run_id"] == "agent-1"
    assert view["tags"] == ["a", "b"]
    assert view["feedback"] == {"comment": "ok", "thumbs": "up"}
    assert view["tokens"] == {"prompt": 24, "completion": 5, "estimated": False}
    assert view["cost_usd"] == pytest.approx(24 * 2.5e-6 + 5 * 10e-6)
    assert view["input"] == MESSAGES and view["output"] == {
        "role": "assistant",
        "content": "Sunny.",
    }


def test_failed_wins_and_end_only_run_has_no_duration() -> None:
    view = runs.render(merged(failing_tool()))
    assert (view["status"], view["end_reason"]) == ("ended", "failed")
    assert view["error"] == {"message": "timeout"}
    assert view["cost_usd"] is None and view["tokens"]["estimated"] is False
    only_end = runs.render(merged([llm_run()[1]]))
    assert (
        only_end["status"] == "ended"
        and only_end["start_at"] is None
        and only_end["duration_ms"] is None
    )


def test_missing_usage_is_estimated() -> None:
    events = llm_run()[:2]
    del events[1]["metadata"]["tokensUsage"]
    view = runs.render(merged(events))
    assert view["tokens"]["estimated"] is True
    assert view["tokens"]["prompt"] > 0 and view["tokens"]["completion"] > 0


def test_pending_until_started() -> None:
    view = runs.render(merged([llm_run()[2]]))
    assert view["status"] == "pending" and view["end_reason"] is None
    assert runs.state(view) is None


def test_session_run() -> None:
    view = runs.render(merged(session()))
    assert view["id"] == "s1" and view["task_name"] == "chat" and view["type"] == "session"
    assert (view["status"], view["end_reason"]) == ("ended", "success")
    assert view["end_at"] == T3 and view["duration_ms"] == 3000
    assert view["tokens"] == {"prompt": 0, "completion": 64, "estimated": False}
    assert view["model"] == "gpt-4o" and view["input"] == "hi"


def test_lifecycle_names() -> None:
    start, end = (parse(sid, raw) for sid, raw in entries(llm_run()[:2]))
    created = runs.merge(runs.new_facts("r1", "llmonitor"), start)
    assert runs.lifecycle(None, created) == ["run.created", "run.started"]
    done = runs.merge(created, end)
    assert runs.lifecycle(created, done) == ["run.completed"]
    assert runs.lifecycle(done, runs.merge(done, start)) == ["run.updated"]
