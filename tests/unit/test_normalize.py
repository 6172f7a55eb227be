from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.normalize import (
    EVENT_TYPES,
    STATUSES,
    Envelope,
    canonical_event_type,
    canonical_status,
    format_timestamp,
    parse_timestamp,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("given_status", "stored"),
    [
        ("streaming", "running"),
        ("complete", "completed"),
        ("done", "completed"),
        ("end", "completed"),
        ("error", "failed"),
        ("COMPLETE", "completed"),
        (" Running ", "running"),
        ("start", "start"),
        ("info", "info"),
    ],
)
def test_status_aliases_are_normalised(given_status: str, stored: str) -> None:
    assert canonical_status(given_status) == (stored, True)


def test_undocumented_status_is_kept_verbatim() -> None:
    assert canonical_status("Paused!") == ("Paused!", False)


def test_event_types() -> None:
    for value in EVENT_TYPES:
        assert canonical_event_type(value) == (value, True)
    assert canonical_event_type("Request") == ("request", True)
    assert canonical_event_type("tool_call") == ("tool_call", False)


@given(st.text())
def test_canonical_status_maps_into_the_documented_set_or_keeps_verbatim(value: str) -> None:
    stored, documented = canonical_status(value)
    if documented:
        assert stored in STATUSES
    else:
        assert stored == value and stored not in STATUSES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z"),
        ("2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00.000Z"),
        ("2026-01-01T00:00:00", "2026-01-01T00:00:00.000Z"),  # naive means UTC
        ("2026-01-01T00:00:00.123456Z", "2026-01-01T00:00:00.123456Z"),
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00.000Z"),  # RFC 3339 leap second
        (1767225600000, "2026-01-01T00:00:00.000Z"),  # epoch milliseconds
        (1767225600000.5, "2026-01-01T00:00:00.000500Z"),
    ],
)
def test_parse_timestamp(raw: object, expected: str) -> None:
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    "raw", ["yesterday", "", "2026-13-01T00:00:00Z", True, None, [], {}, 10**30]
)
def test_unparseable_timestamps_raise_value_error(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(raw)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    )
)
def test_any_aware_datetime_round_trips_to_utc(moment: datetime) -> None:
    stored = parse_timestamp(moment.isoformat())
    assert stored.endswith("Z")
    assert datetime.fromisoformat(stored) == moment
    assert parse_timestamp(stored) == stored  # idempotent


@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()))
def test_parse_timestamp_only_ever_raises_value_error(value: object) -> None:
    try:
        stored = parse_timestamp(value)
    except ValueError:
        return
    assert stored.endswith("Z") and "T" in stored


def test_format_keeps_microseconds_only_when_present() -> None:
    assert format_timestamp(datetime(2026, 1, 1, 0, 0, 0, 5000, UTC)) == "2026-01-01T00:00:00.005Z"
    assert (
        format_timestamp(datetime(2026, 1, 1, 0, 0, 0, 5001, UTC)) == "2026-01-01T00:00:00.005001Z"
    )


def test_envelope_locations() -> None:
    assert Envelope([{}], "body", single=True).location(0) == "body"
    assert Envelope([{}, {}], "body.events").location(1) == "body.events[1]"
    assert Envelope([{}], "body").location(0) == "body[0]"


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_the_stored_form_is_kept_as_is_and_agrees_with_the_long_way(moment: datetime) -> None:
    whole_ms = moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC)
    stored = format_timestamp(whole_ms)
    assert parse_timestamp(stored) == stored
    # what the general path would make of it, when asked with an explicit offset
    assert parse_timestamp(stored.replace("Z", "+00:00")) == stored


@pytest.mark.parametrize("raw", ["2026-02-30T00:00:00.000Z", "0000-01-01T00:00:00.000Z"])
def test_a_stored_form_that_is_no_real_moment_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(raw)
