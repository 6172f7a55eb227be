"""The notifications a batch raises (pure): a run that became failed, a failed webhook event."""

from __future__ import annotations

from typing import Any

from services.aggregator import events as ev
from services.aggregator import runs
from shared.notifications import Occurrence


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error) if error else ""


def run_failed(facts: runs.Facts, event: ev.Event) -> Occurrence:
    task = runs.get(facts, "name") or runs.get(facts, "type") or "run"
    return Occurrence(
        kind="run.failed",
        severity="error",
        task_name=str(task),
        end_reason="failed",
        title=f"{task} failed",
        body=_message(runs.get(facts, "error")) or f"run {facts['id']} failed",
        run_id=facts["id"],
        occurred_at=event.timestamp,
        dedup_id=event.id,
    )


def event_failed(event: ev.Event) -> Occurrence:
    command = str(event.data.get("command") or event.event_type or "event")
    meta = event.metadata
    body = _message(meta.get("error") or meta.get("message")) or (
        f"{event.event_type} event with status {event.status}"
    )
    return Occurrence(
        kind="run.failed",
        severity="error",
        task_name=command,
        end_reason="failed",
        title=f"{command} failed",
        body=body,
        run_id=ev.session_id(event) or event.id,
        occurred_at=event.timestamp,
        dedup_id=event.id,
    )
