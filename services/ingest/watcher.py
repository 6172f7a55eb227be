"""LLM Watcher open-wrapper webhook: envelope and DashboardEvent rules (CONTRACT §1.1). Pure.

Accepted bodies: one DashboardEvent; `{"batch": true, "events": [...]}` (any object without
`event_type` that has `events` or `batch: true` is read as a batch); a bare array of events.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.ingest.normalize import (
    Envelope,
    Invalid,
    Normalized,
    canonical_event_type,
    canonical_status,
    missing,
    parse_timestamp,
    wrong_type,
)
from shared.errors import ErrorDetail

SOURCE = "webhook"
# Top-level fields of a DashboardEvent; any other top-level field moves into `metadata`.
FIELDS = frozenset(
    {"id", "timestamp", "event_type", "command", "status", "model", "metadata", "source"}
)


def webhook_envelope(body: dict[str, Any] | list[Any]) -> Envelope | Invalid:
    if isinstance(body, list):
        return Envelope(body, "body")
    if "event_type" not in body and ("events" in body or body.get("batch") is True):
        if "events" not in body:
            return Invalid([missing("body.events")])
        events = body["events"]
        if not isinstance(events, list):
            return Invalid([wrong_type("body.events", "an array of events", events)])
        return Envelope(events, "body.events")
    return Envelope([body], "body", single=True)


def normalize_webhook(raw: Any, location: str, received: str) -> Normalized | Invalid:
    """One client event → the stored DashboardEvent, or every schema problem it has.

    `received` (RFC 3339) fills a missing timestamp; a missing or empty id gets a new UUID.
    """
    # The hot path: a well-formed event is checked field by field once, inline. Anything it
    # does not like goes to `_checked`, which collects every problem with its location.
    if not isinstance(raw, dict):
        return Invalid([wrong_type(location, "an object", raw)])
    get = raw.get
    event_type, command, status = get("event_type"), get("command"), get("status")
    model, metadata, event_id = get("model"), get("metadata"), get("id")
    if not (
        isinstance(event_type, str) and event_type
        and isinstance(command, str) and command
        and isinstance(status, str) and status
        and (model is None or isinstance(model, str))
        and (metadata is None or isinstance(metadata, dict))
        and (event_id is None or isinstance(event_id, str))
    ):  # fmt: skip
        return _checked(raw, location, received)
    timestamp = get("timestamp")
    if timestamp is None or timestamp == "":
        timestamp = received
    else:
        try:
            timestamp = parse_timestamp(timestamp)
        except ValueError:
            return _checked(raw, location, received)
    if not event_id:
        event_id = str(uuid.uuid4())
    if metadata is None:
        metadata = {}
    return _build(raw, event_id, timestamp, event_type, command, status, model, metadata)


def _checked(raw: dict[str, Any], location: str, received: str) -> Normalized | Invalid:
    errors: list[ErrorDetail] = []

    event_id = raw.get("id")
    if event_id is None or event_id == "":
        event_id = str(uuid.uuid4())
    elif not isinstance(event_id, str):
        errors.append(wrong_type(f"{location}.id", "a string", event_id))

    timestamp = raw.get("timestamp")
    if timestamp is None or timestamp == "":
        timestamp = received
    else:
        try:
            timestamp = parse_timestamp(timestamp)
        except ValueError as exc:
            errors.append(ErrorDetail(f"{location}.timestamp", str(exc), timestamp))

    event_type = _required_text(raw, "event_type", location, errors)
    command = _required_text(raw, "command", location, errors)
    status = _required_text(raw, "status", location, errors)

    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        errors.append(wrong_type(f"{location}.model", "a string or null", model))

    metadata = raw.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        errors.append(wrong_type(f"{location}.metadata", "an object", metadata))

    if errors:
        return Invalid(errors)
    assert isinstance(metadata, dict) and isinstance(event_id, str)  # narrowed by the checks above
    return _build(raw, event_id, timestamp, event_type, command, status, model, metadata)


def _build(
    raw: dict[str, Any],
    event_id: str,
    timestamp: str,
    event_type: str,
    command: str,
    status: str,
    model: str | None,
    metadata: dict[str, Any],
) -> Normalized:
    """The stored event from checked values: extra top-level fields into `metadata`, aliases."""
    if not FIELDS.issuperset(raw):
        metadata = dict(metadata)  # never mutate the client's object in place
        for key, value in raw.items():
            if key not in FIELDS and key not in metadata:
                metadata[key] = value

    event_type, type_ok = canonical_event_type(event_type)
    status, status_ok = canonical_status(status)
    undocumented = ()
    if not (type_ok and status_ok):
        undocumented = tuple(
            n for n, ok in (("event_type", type_ok), ("status", status_ok)) if not ok
        )

    event = {
        "id": event_id,
        "timestamp": timestamp,
        "event_type": event_type,
        "command": command,
        "status": status,
        "model": model,
        "metadata": metadata,
        "source": SOURCE,
    }
    return Normalized(event, routing_key(metadata, event_id), undocumented)


def routing_key(metadata: dict[str, Any], event_id: str) -> str:
    """A watcher session stays in one partition: the key is `session_id` as stored (after the
    top-level field moved into metadata, so the aggregator pairs by the same value)."""
    session = metadata.get("session_id")
    if isinstance(session, str) and session:
        return session
    if isinstance(session, int) and not isinstance(session, bool):
        return str(session)
    return event_id


def _required_text(raw: dict[str, Any], name: str, location: str, errors: list[ErrorDetail]) -> str:
    value = raw.get(name)
    if isinstance(value, str) and value:
        return value
    if name not in raw:
        errors.append(missing(f"{location}.{name}"))
    elif isinstance(value, str):
        errors.append(ErrorDetail(f"{location}.{name}", "must not be empty", value))
    else:
        errors.append(wrong_type(f"{location}.{name}", "a string", value))
    return ""
