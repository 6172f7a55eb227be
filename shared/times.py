"""RFC 3339 timestamps as the API shows them (UTC, millisecond precision, `Z` suffix)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=65536)  # the same instants recur (a run's times, every batch)
def rfc3339(epoch_s: float) -> str:
    """`2026-01-01T00:00:00.000Z` for an epoch in seconds."""
    # Round to the millisecond first: isoformat truncates, and 0.7 s is 0.69999… as a float.
    moment = datetime.fromtimestamp(round(epoch_s * 1000) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(value: object) -> float | None:
    if isinstance(value, str):
        return _parse_text(value)
    return _parse_other(value)


@functools.lru_cache(maxsize=65536)
def _parse_text(value: str) -> float | None:
    return _parse_other(value)


def _parse_other(value: object) -> float | None:
    """Epoch seconds of an RFC 3339 / ISO 8601 string (naive means UTC), or of epoch
    milliseconds given as a number; None when it cannot be read."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
