"""LLMonitor / Lunary ingestion: envelope, event rules and the mapping to a DashboardEvent
(CONTRACT §1.2 and §2). Pure.

Accepted bodies: `{"events": [...]}`, `{"events": {...}}`, a bare array, a single event object.
Each event is judged on its own (the route answers 207 when only some pass).
"""

from __future__ import annotations

import uuid
from typing import Any

from services.ingest.normalize import (
    Envelope,
    Invalid,
    Normalized,
    missing,
    parse_timestamp,
    wrong_type,
)
from shared.errors import ErrorDetail
from shared.schemas import LLMONITOR_EVENT_MAP

SOURCE = "llmonitor"
TYPES = frozenset(
    {"llm", "agent", "tool", "chain", "chat", "convo", "thread", "embed", "retriever"}
)
EVENT_MAP = LLMONITOR_EVENT_MAP
# An event's id is uuid5(ID_NAMESPACE, "runId|event|timestamp"): the same event re-sent gets the
# same id, so the aggregator's dedup applies it once. Never change this value.
ID_NAMESPACE = uuid.UUID("b2cd37a7-a190-5224-a754-9d6c67e020e5")


def llmonitor_envelope(body: dict[str, Any] | list[Any]) -> Envelope | Invalid:
    if isinstance(body, list):
        return Envelope(body, "body")
    if "events" in body:
        events = body["events"]
        if isinstance(events, list):
            return Envelope(events, "body.events")
        if isinstance(events, dict):
            return Envelope([events], "body.events", single=True)
        return Invalid([wrong_type("body.events", "an array of events", events)])
    return Envelope([body], "body", single=True)


def event_app(raw: Any, bearer_app: str | None) -> str | None:
    """The app id an event claims: its `app` field, else the bearer app id (if any)."""
    app = raw.get("app") if isinstance(raw, dict) else None
    if isinstance(app, str) and app:
        return app
    return bearer_app if app is None else None


def event_id(run_id: str, event: str, timestamp: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{run_id}|{event}|{timestamp}"))


def normalize_llmonitor(
    raw: Any, location: str, bearer_app: str | None = None
) -> Normalized | Invalid:
    """One LLMonitor event → DashboardEvent with every original field under `metadata`."""
    if not isinstance(raw, dict):
        return Invalid([wrong_type(location, "an object", raw)])
    errors: list[ErrorDetail] = []
    run_type = _text(raw, "type", location, errors, required=True)
    event = _text(raw, "event", location, errors, required=True)
    run_id = _text(raw, "runId", location, errors, required=True)
    name = _text(raw, "name", location, errors, required=False)
    _text(raw, "parentRunId", location, errors, required=False)

    app = event_app(raw, bearer_app)
    if app is None:
        if raw.get("app") is None:
            errors.append(missing(f"{location}.app"))
        else:
            errors.append(wrong_type(f"{location}.app", "a non-empty string", raw.get("app")))

    timestamp = ""
    if raw.get("timestamp") is None:
        errors.append(missing(f"{location}.timestamp"))
    else:
        try:
            timestamp = parse_timestamp(raw["timestamp"])
        except ValueError as exc:
            errors.append(ErrorDetail(f"{location}.timestamp", str(exc), raw["timestamp"]))

    _check_optional(raw, location, errors)
    if errors:
        return Invalid(errors)

    mapped = EVENT_MAP.get(event)
    event_type, status = mapped if mapped is not None else (event, "info")
    undocumented = tuple(
        n for n, ok in (("type", run_type in TYPES), ("event", mapped is not None)) if not ok
    )
    metadata = dict(raw)  # every original field, camelCase as sent
    if "app" not in metadata or metadata["app"] is None:
        metadata["app"] = app  # it came from the bearer
    normalized = {
        "id": event_id(run_id, event, timestamp),
        "timestamp": timestamp,
        "event_type": event_type,
        "command": f"{run_type}:{name}" if name else run_type,
        "status": status,
        "model": name if run_type == "llm" and name else None,
        "metadata": metadata,
        "source": SOURCE,
    }
    return Normalized(normalized, run_id, undocumented, app)


def _text(
    raw: dict[str, Any], name: str, location: str, errors: list[ErrorDetail], *, required: bool
) -> str:
    value = raw.get(name)
    if isinstance(value, str) and (value or not required):
        return value
    if value is None:
        if required:
            errors.append(missing(f"{location}.{name}"))
        return ""
    if isinstance(value, str):
        errors.append(ErrorDetail(f"{location}.{name}", "must not be empty", value))
    else:
        errors.append(wrong_type(f"{location}.{name}", "a string", value))
    return ""


def _check_optional(raw: dict[str, Any], location: str, errors: list[ErrorDetail]) -> None:
    tags = raw.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            errors.append(wrong_type(f"{location}.tags", "an array of strings", tags))
        else:
            errors.extend(
                wrong_type(f"{location}.tags[{i}]", "a string", tag)
                for i, tag in enumerate(tags)
                if not isinstance(tag, str)
            )
    usage = raw.get("tokensUsage")
    if usage is not None:
        if not isinstance(usage, dict):
            errors.append(wrong_type(f"{location}.tokensUsage", "an object", usage))
        else:
            for key in ("prompt", "completion"):
                count = usage.get(key)
                if count is None:
                    continue
                if isinstance(count, bool) or not isinstance(count, int | float):
                    errors.append(wrong_type(f"{location}.tokensUsage.{key}", "a number", count))
                elif count < 0:
                    errors.append(
                        ErrorDetail(f"{location}.tokensUsage.{key}", "must be >= 0", count)
                    )
    for key in ("extra", "feedback"):
        value = raw.get(key)
        if value is not None and not isinstance(value, dict):
            errors.append(wrong_type(f"{location}.{key}", "an object", value))
    error = raw.get("error")
    if error is not None and not isinstance(error, dict | str):
        errors.append(wrong_type(f"{location}.error", "an object {message, stack}", error))
