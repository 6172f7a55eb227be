from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.llmonitor import (
    event_app,
    event_id,
    llmonitor_envelope,
    normalize_llmonitor,
)
from services.ingest.normalize import Envelope, Invalid, Normalized
from shared.samples import LLMONITOR_PATHS, llmonitor_samples
from shared.schemas import DashboardEvent
from tests import strategies

pytestmark = pytest.mark.unit

TS = "2026-01-01T00:00:00.000Z"


def run_event(**fields: Any) -> dict[str, Any]:
    base = {
        "type": "llm",
        "event": "start",
        "app": "app-1",
        "runId": "run-1",
        "name": "gpt-4o",
        "timestamp": TS,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def ok(raw: Any, bearer_app: str | None = None) -> Normalized:
    result = normalize_llmonitor(raw, "body", bearer_app)
    assert isinstance(result, Normalized), result
    return result


def errors(
    raw: Any, location: str = "body", bearer_app: str | None = None
) -> list[tuple[str, str]]:
    result = normalize_llmonitor(raw, location, bearer_app)
    assert isinstance(result, Invalid), result
    return [(e.location, e.message) for e in result.errors]


@pytest.mark.parametrize(
    ("event", "event_type", "status"),
    [
        ("start", "request", "start"),
        ("end", "completion", "completed"),
        ("error", "error", "failed"),
        ("feedback", "status", "info"),
        ("update", "status", "info"),
        ("chat", "request", "info"),
    ],
)
def test_event_mapping(event: str, event_type: str, status: str) -> None:
    stored = ok(run_event(event=event)).event
    assert (stored["event_type"], stored["status"]) == (event_type, status)
    assert stored["source"] == "llmonitor"


def test_command_and_model() -> None:
    assert ok(run_event()).event["command"] == "llm:gpt-4o"
    assert ok(run_event()).event["model"] == "gpt-4o"
    tool = ok(run_event(type="tool", name="get_weather")).event
    assert (tool["command"], tool["model"]) == ("tool:get_weather", None)
    nameless = ok(run_event(event="end", name=...)).event
    assert (nameless["command"], nameless["model"]) == ("llm", None)


def test_all_original_fields_are_kept_under_metadata_as_sent() -> None:
    raw = run_event(
        parentRunId="p",
        input=[{"role": "user", "content": "hi"}],
        tags=["a"],
        extra={"temperature": 0.2},
        tokensUsage={"prompt": 3, "completion": 4},
        userId="u1",
        timestamp=1767225600000,
    )
    stored = ok(raw).event
    assert stored["metadata"] == raw
    assert stored["timestamp"] == TS  # epoch milliseconds normalised


def test_id_is_deterministic_over_run_event_and_timestamp() -> None:
    first = ok(run_event()).event["id"]
    assert ok(run_event(timestamp=1767225600000)).event["id"] == first  # same instant, other form
    assert ok(run_event(input="other payload")).event["id"] == first
    assert ok(run_event(event="end")).event["id"] != first
    assert ok(run_event(runId="run-2")).event["id"] != first
    assert first == event_id("run-1", "start", TS)


def test_routing_key_is_the_run_id_and_app_is_reported() -> None:
    result = ok(run_event())
    assert (result.routing_key, result.app) == ("run-1", "app-1")


def test_app_from_bearer_when_absent() -> None:
    result = ok(run_event(app=...), bearer_app="bearer-app")
    assert result.app == "bearer-app"
    assert result.event["metadata"]["app"] == "bearer-app"
    assert ok(run_event(), bearer_app="bearer-app").app == "app-1"  # the event's own app wins
    assert event_app({"app": 5}, "bearer-app") is None  # a wrong-typed app is not replaced


def test_undocumented_type_and_event_are_kept_and_flagged() -> None:
    result = ok(run_event(type="workflow", event="stream"))
    assert result.event["event_type"] == "stream" and result.event["status"] == "info"
    assert result.event["command"] == "workflow:gpt-4o"
    assert result.undocumented == ("type", "event")


def test_every_problem_is_listed_with_its_location() -> None:
    raw = {
        "type": "",
        "runId": 3,
        "timestamp": "later",
        "tags": ["ok", 1],
        "tokensUsage": {"prompt": -1},
        "extra": [],
        "error": 5,
        "name": 7,
    }
    assert errors(raw, "body.events[2]") == [
        ("body.events[2].type", "must not be empty"),
        ("body.events[2].event", "field required"),
        ("body.events[2].runId", "expected a string, got number"),
        ("body.events[2].name", "expected a string, got number"),
        ("body.events[2].app", "field required"),
        ("body.events[2].timestamp", "not an RFC 3339 timestamp"),
        ("body.events[2].tags[1]", "expected a string, got number"),
        ("body.events[2].tokensUsage.prompt", "must be >= 0"),
        ("body.events[2].extra", "expected an object, got array"),
        ("body.events[2].error", "expected an object {message, stack}, got number"),
    ]


def test_missing_timestamp_is_an_error() -> None:
    assert errors(run_event(timestamp=...)) == [("body.timestamp", "field required")]


def test_envelopes() -> None:
    for body, base, single in [
        ({"events": [run_event()]}, "body.events", False),
        ({"events": run_event()}, "body.events", True),
        ([run_event()], "body", False),
        (run_event(), "body", True),
    ]:
        envelope = llmonitor_envelope(body)
        assert isinstance(envelope, Envelope)
        assert (envelope.base, envelope.single) == (base, single)
    bad = llmonitor_envelope({"events": "x"})
    assert isinstance(bad, Invalid) and bad.errors[0].location == "body.events"


def test_seed_samples_all_normalise() -> None:
    for path, body in llmonitor_samples("app-9"):
        assert path in LLMONITOR_PATHS
        envelope = llmonitor_envelope(body)
        assert isinstance(envelope, Envelope)
        for index, raw in enumerate(envelope.events):
            result = normalize_llmonitor(raw, envelope.location(index))
            assert isinstance(result, Normalized), result
            assert result.app == "app-9"
            DashboardEvent.model_validate(result.event)


json_values = strategies.json_values(width=3, key_size=6, leaves=10)
NAMES = [
    "type",
    "event",
    "app",
    "runId",
    "parentRunId",
    "timestamp",
    "name",
    "tags",
    "tokensUsage",
    "extra",
    "feedback",
    "error",
    "input",
    "output",
]


@given(
    st.dictionaries(st.sampled_from(NAMES), json_values, max_size=10),
    st.none() | st.text(min_size=1, max_size=5),
)
def test_any_object_maps_or_lists_errors_never_raises(
    raw: dict[str, Any], bearer_app: str | None
) -> None:
    result = normalize_llmonitor(raw, "body", bearer_app)
    if isinstance(result, Invalid):
        assert result.errors
        return
    stored = result.event
    assert stored["metadata"]["runId"] == result.routing_key
    assert orjson.loads(orjson.dumps(stored)) == stored
    DashboardEvent.model_validate(stored)
