"""The one internal envelope both input formats become, and the value rules they share.

Pure: data in, values out. `watcher.py` and `llmonitor.py` use these helpers to turn a client's
event into a `Normalized` — the DashboardEvent dict that goes into the events stream (field
`shared.keys.EVENT_FIELD`, orjson bytes) plus the key that picks its partition.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.errors import ErrorDetail

EVENT_TYPES = frozenset(
    {"request", "streaming", "completion", "error", "setup", "status", "system"}
)
STATUSES = frozenset({"start", "running", "completed", "failed", "info"})
STATUS_ALIASES = {
    "streaming": "running",
    "complete": "completed",
    "done": "completed",
    "end": "completed",
    "error": "failed",
}
SOURCES = ("webhook", "llmonitor")

# How deep an event may nest. orjson encodes at most 254 levels, and the aggregator, the feeds
# and the read APIs wrap an event a few levels deeper still (run views, SSE payloads, pages):
# an event deeper than this is refused at ingest, where the client can be told, instead of
# failing downstream (tests/integration/test_bad_input.py).
MAX_DEPTH = 64
_ORJSON_MAX_DEPTH = 254

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LEAP_SECOND = re.compile(r"(T|t| )(\d\d):(\d\d):60")
# What format_timestamp writes for a whole millisecond in UTC (ASCII digits only).
_STORED_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


@dataclass(slots=True)
class Normalized:
    """One event ready to publish: `event` is the DashboardEvent, `routing_key` picks its
    partition (run id, else session id, else event id), `undocumented` names the fields whose
    value was outside the documented set (kept verbatim, counted by a metric)."""

    event: dict[str, Any]
    routing_key: str
    undocumented: tuple[str, ...] = ()
    app: str | None = None  # LLMonitor app id, for the registry check and per-app rate limits


@dataclass(slots=True)
class Envelope:
    """The events of one request and where they sit in the body, for error locations."""

    events: list[Any]
    base: str = "body"  # "body" (single event or bare array) or "body.events"
    single: bool = False

    def location(self, index: int) -> str:
        return self.base if self.single else f"{self.base}[{index}]"


@dataclass(slots=True)
class Invalid:
    """An event that broke the schema: every problem found, with its precise location."""

    errors: list[ErrorDetail] = field(default_factory=list)


def canonical_status(value: str) -> tuple[str, bool]:
    """(stored value, documented?). Aliases and case variants map to the documented value;
    anything else is kept verbatim."""
    if value in STATUSES:
        return value, True
    folded = value.strip().lower()
    if folded in STATUSES:
        return folded, True
    alias = STATUS_ALIASES.get(folded)
    if alias is not None:
        return alias, True
    return value, False


def canonical_event_type(value: str) -> tuple[str, bool]:
    if value in EVENT_TYPES:
        return value, True
    folded = value.strip().lower()
    if folded in EVENT_TYPES:
        return folded, True
    return value, False


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`: milliseconds, or microseconds when the input had them."""
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def now_timestamp() -> str:
    """The receive time, to the millisecond (as clients' own timestamps usually are)."""
    now = time.time()
    second = int(now)
    return f"{_utc_second(second)}.{min(999, int((now - second) * 1000)):03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of an epoch second (memoised: a busy second asks thousands of
    times)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def parse_timestamp(value: Any) -> str:
    """An ISO 8601 / RFC 3339 string or epoch milliseconds → RFC 3339 UTC string.

    A string without an offset is read as UTC. Raises ValueError with a client-facing message.
    """
    if isinstance(value, str):
        # Most clients already send the stored form: check it is a real moment, keep it as is.
        if len(value) == 24 and _STORED_FORM.fullmatch(value) is not None:
            try:
                datetime.fromisoformat(value)
                return value
            except ValueError:  # e.g. 23:59:60 or Feb 30: the long way below
                pass
        moment = _parse_iso(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = _EPOCH + timedelta(milliseconds=value)
        except (OverflowError, ValueError):
            raise ValueError("epoch milliseconds out of range") from None
    else:
        raise ValueError(  # noqa: TRY004 - callers catch one error type: "not a timestamp"
            "must be an RFC 3339 string or epoch milliseconds"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    else:
        try:
            moment = moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("timestamp out of range") from None
    return format_timestamp(moment)


def _parse_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    # RFC 3339 allows a leap second (23:59:60); Python does not: read it as the next second.
    leap = _LEAP_SECOND.search(text)
    if leap is not None:
        try:
            base = datetime.fromisoformat(text[: leap.end() - 2] + "59" + text[leap.end() :])
            return base + timedelta(seconds=1)
        except (ValueError, OverflowError):
            pass
    raise ValueError("not an RFC 3339 timestamp")


def type_name(value: Any) -> str:
    """JSON's name for a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def wrong_type(location: str, expected: str, value: Any) -> ErrorDetail:
    return ErrorDetail(location, f"expected {expected}, got {type_name(value)}", value)


def missing(location: str) -> ErrorDetail:
    return ErrorDetail(location, "field required", None)


class TooDeep(ValueError):
    pass


def encode_event(event: dict[str, Any]) -> bytes:
    """The stored bytes of an event; TooDeep when it nests deeper than MAX_DEPTH levels."""
    try:
        raw = orjson.dumps(event)
    except orjson.JSONEncodeError:  # deeper than orjson goes at all
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels") from None
    # Nesting never exceeds the count of opening brackets (strings only add to it), so the
    # common event needs no further look; the others are encoded again under the levels that
    # would remain, which makes orjson itself refuse what is too deep.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        wrapped: Any = event
        for _ in range(_ORJSON_MAX_DEPTH - MAX_DEPTH):
            wrapped = [wrapped]
        try:
            orjson.dumps(wrapped)
        except orjson.JSONEncodeError:
            raise TooDeep(f"nested deeper than {MAX_DEPTH} levels") from None
    return raw
