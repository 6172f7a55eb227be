import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest import watcher
from services.ingest.normalize import Envelope, Invalid, Normalized
from services.ingest.watcher import normalize_webhook, routing_key, webhook_envelope
from shared.samples import WATCHER_PATH, watcher_samples
from shared.schemas import DashboardEvent
from tests import strategies

pytestmark = pytest.mark.unit

RECEIVED = "2026-02-03T04:05:06.789Z"
KEYS = ["id", "timestamp", "event_type", "command", "status", "model", "metadata", "source"]

json_values = strategies.json_values()
FIELD_NAMES = [
    "id",
    "timestamp",
    "event_type",
    "command",
    "status",
    "model",
    "metadata",
    "source",
    "session_id",
    "duration_ms",
    "batch",
    "events",
]
event_like = st.dictionaries(
    st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values, max_size=9
)


def event(**fields: Any) -> dict[str, Any]:
    base = {"event_type": "request", "command": "ask", "status": "start"}
    base.update(fields)
    return base


def ok(raw: Any, location: str = "body") -> Normalized:
    result = normalize_webhook(raw, location, RECEIVED)
    assert isinstance(result, Normalized), result
    return result


def bad(raw: Any, location: str = "body") -> list[tuple[str, str]]:
    result = normalize_webhook(raw, location, RECEIVED)
    assert isinstance(result, Invalid), result
    return [(e.location, e.message) for e in result.errors]


def test_every_seed_sample_normalises_with_source_overwritten() -> None:
    for path, body in watcher_samples():
        assert path == WATCHER_PATH
        envelope = webhook_envelope(body)
        assert isinstance(envelope, Envelope)
        for index, raw in enumerate(envelope.events):
            stored = ok(raw, envelope.location(index)).event
            assert list(stored) == KEYS
            assert stored["source"] == "webhook"
            DashboardEvent.model_validate(stored)  # the read side's model accepts it


def test_missing_id_and_timestamp_are_filled() -> None:
    stored = ok(event()).event
    assert uuid.UUID(stored["id"])
    assert stored["timestamp"] == RECEIVED
    assert stored["metadata"] == {} and stored["model"] is None


def test_given_id_and_timestamp_are_kept_normalised() -> None:
    stored = ok(event(id="abc", timestamp="2026-01-01T01:00:00+01:00")).event
    assert stored["id"] == "abc"
    assert stored["timestamp"] == "2026-01-01T00:00:00.000Z"


def test_aliases_and_undocumented_values() -> None:
    result = ok(event(status="streaming", event_type="tool_call"))
    assert result.event["status"] == "running"
    assert result.event["event_type"] == "tool_call"
    assert result.undocumented == ("event_type",)
    assert ok(event(status="complete")).undocumented == ()


def test_extra_top_level_fields_move_into_metadata_unless_present() -> None:
    stored = ok(
        event(
            session_id="s1",
            duration_ms=850,
            tokens_so_far=3,
            metadata={"duration_ms": 1, "tokens": 9},
        )
    ).event
    assert stored["metadata"] == {
        "duration_ms": 1,
        "tokens": 9,
        "session_id": "s1",
        "tokens_so_far": 3,
    }
    assert "session_id" not in stored


def test_source_is_overwritten_whatever_it_was() -> None:
    assert ok(event(source={"weird": True})).event["source"] == "webhook"


def test_routing_key_is_the_stored_session_id() -> None:
    assert ok(event(session_id="top")).routing_key == "top"
    assert ok(event(metadata={"session_id": "meta"})).routing_key == "meta"
    # metadata wins over the top-level copy, so partitioning follows what the aggregator sees
    assert ok(event(session_id="top", metadata={"session_id": "meta"})).routing_key == "meta"
    assert ok(event(id="e1")).routing_key == "e1"
    assert routing_key({"session_id": 42}, "x") == "42"


def test_every_problem_is_listed_with_its_location() -> None:
    problems = bad(
        {"event_type": 5, "status": "", "model": 3, "metadata": [], "timestamp": "soon", "id": 7},
        "body.events[3]",
    )
    assert problems == [
        ("body.events[3].id", "expected a string, got number"),
        ("body.events[3].timestamp", "not an RFC 3339 timestamp"),
        ("body.events[3].event_type", "expected a string, got number"),
        ("body.events[3].command", "field required"),
        ("body.events[3].status", "must not be empty"),
        ("body.events[3].model", "expected a string or null, got number"),
        ("body.events[3].metadata", "expected an object, got array"),
    ]


def test_event_that_is_not_an_object() -> None:
    assert bad(5, "body[2]") == [("body[2]", "expected an object, got number")]


def test_envelopes() -> None:
    single = webhook_envelope(event())
    assert isinstance(single, Envelope) and single.single and single.location(0) == "body"
    batch = webhook_envelope({"batch": True, "events": [event(), event()]})
    assert isinstance(batch, Envelope) and batch.location(1) == "body.events[1]"
    bare = webhook_envelope([event()])
    assert isinstance(bare, Envelope) and bare.location(0) == "body[0]"
    assert isinstance(webhook_envelope({"events": []}), Envelope)  # `batch` omitted


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"batch": True}, "body.events"),
        ({"batch": True, "events": {"a": 1}}, "body.events"),
        ({"events": "x"}, "body.events"),
    ],
)
def test_bad_batch_envelopes(body: dict[str, Any], location: str) -> None:
    result = webhook_envelope(body)
    assert isinstance(result, Invalid)
    assert [e.location for e in result.errors] == [location]


def test_an_event_with_a_batch_field_is_still_one_event() -> None:
    envelope = webhook_envelope(event(batch=True))
    assert isinstance(envelope, Envelope) and envelope.single
    assert ok(envelope.events[0]).event["metadata"] == {"batch": True}


def test_the_client_object_is_not_mutated() -> None:
    raw = event(session_id="s", metadata={"a": 1})
    ok(raw)
    assert raw["metadata"] == {"a": 1}


@given(event_like)
def test_any_object_normalises_or_lists_errors_never_raises(raw: dict[str, Any]) -> None:
    result = normalize_webhook(raw, "body", RECEIVED)
    if isinstance(result, Invalid):
        assert result.errors and all(e.location.startswith("body") for e in result.errors)
        return
    stored = result.event
    assert list(stored) == KEYS and stored["source"] == "webhook"
    assert orjson.loads(orjson.dumps(stored)) == stored
    DashboardEvent.model_validate(stored)
    for key, value in raw.items():  # nothing the client sent is lost
        if key not in KEYS:
            assert key in stored["metadata"]
            if not isinstance(raw.get("metadata"), dict) or key not in raw["metadata"]:
                assert stored["metadata"][key] == value


@given(st.one_of(json_values, st.lists(event_like, max_size=3), event_like))
def test_any_json_gets_an_envelope_or_a_precise_error(body: Any) -> None:
    if not isinstance(body, dict | list):
        return  # the route answers 400 before this point
    result = webhook_envelope(body)
    if isinstance(result, Invalid):
        assert [e.location for e in result.errors] in (["body.events"],)
    else:
        for index, raw in enumerate(result.events):
            normalize_webhook(raw, result.location(index), RECEIVED)


@given(event_like)
def test_the_fast_path_agrees_with_the_full_check(raw: dict[str, Any]) -> None:
    """Every event comes out of `normalize_webhook` (inline checks first) as it comes out of
    the full check alone. A missing id is filled with a random one by both: set it aside."""
    fast = normalize_webhook(raw, "body", RECEIVED)
    full = watcher._checked(raw, "body", RECEIVED)
    if not raw.get("id"):
        for result in (fast, full):
            if isinstance(result, Normalized):
                if result.routing_key == result.event["id"]:
                    result.routing_key = "<filled>"
                result.event["id"] = "<filled>"
    assert fast == full
