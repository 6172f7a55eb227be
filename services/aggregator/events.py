"""What one event-stream entry means to the aggregator (pure).

Ingest stores a normalised DashboardEvent `{id, timestamp, event_type, command, status, model,
metadata, source}`. For `source: "llmonitor"` the original LLMonitor event is in `metadata`
(camelCase); ingest already mapped it (`start`->request/start, `end`->completion/completed,
`error`->error/failed, `feedback`/`update`->status/info, `command` = `type:name`, `model` = name
of llm runs). An LLMonitor event without `name` (typical for `end`/`feedback`) takes its run's
name here, when the run already knows it.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from shared.histogram import is_finite_duration
from shared.times import parse_rfc3339

LLMONITOR = "llmonitor"
WEBHOOK = "webhook"


class BadEvent(ValueError):
    """The entry cannot be applied (not JSON, not an object, no id): retried, then dead-lettered."""


@dataclass(slots=True)
class Event:
    """One parsed entry. The fields the fold reads for every event are plain attributes, read
    once here (this is the per-event hot path at 20k events/s)."""

    stream_id: str  # the events-stream entry id, `ms-seq`
    ms: int  # arrival time (ms) from the entry id: deterministic across redeliveries
    seq: int  # the entry id's sequence number
    raw: bytes  # the stored JSON; reused as-is for history and the feed when unchanged
    data: dict[str, Any]
    id: str
    source: str
    event_type: str
    status: str
    model: str | None
    metadata: dict[str, Any]
    digest: str  # dedup marker of the event id
    run: tuple[str, str, str | None] | None  # (run id, kind, parent run id): see `run_ref`
    changed: bool = False  # data was completed here (run name), so `raw` must be re-encoded
    _ts: float | None = None
    _tokens: tuple[int, int] | None = None

    @property
    def timestamp(self) -> float:
        """Client time of the event (epoch s); arrival time when unreadable."""
        if self._ts is None:
            ts = parse_rfc3339(self.data.get("timestamp"))
            self._ts = ts if ts is not None else self.ms / 1000
        return self._ts

    @property
    def failed(self) -> bool:
        return self.status == "failed" or self.event_type == "error"

    def encoded(self) -> bytes:
        return orjson.dumps(self.data) if self.changed else self.raw


def digest(event_id: str) -> str:
    """Dedup marker of an event id: a 96-bit hash (collisions: ~2^-96 per pair), base64."""
    raw = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=12).digest()
    # 16 characters (no padding): the commit sends a batch's markers as one string of them
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def parse(stream_id: str, raw: bytes) -> Event:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("id") in (None, ""):
        raise BadEvent("not a DashboardEvent object with an id")
    ms, _, seq = stream_id.partition("-")
    event_id = str(data["id"])
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    model = data.get("model")
    source = str(data.get("source") or WEBHOOK)
    return Event(
        stream_id=stream_id,
        ms=int(ms),
        seq=int(seq or 0),
        raw=raw,
        data=data,
        id=event_id,
        source=source,
        event_type=str(data.get("event_type") or ""),
        status=str(data.get("status") or ""),
        model=str(model) if model not in (None, "") else None,
        metadata=meta,
        digest=digest(event_id),
        run=run_ref(source, meta, data),
    )


def run_ref(
    source: str, meta: dict[str, Any], data: dict[str, Any]
) -> tuple[str, str, str | None] | None:
    """(run id, kind, parent run id) of the run an event belongs to, or None: an LLMonitor
    event's `runId` (kind `llmonitor`), else a webhook event's `session_id` (kind `session`)."""
    if source == LLMONITOR:
        run_id = meta.get("runId")
        if run_id in (None, ""):
            return None
        parent = meta.get("parentRunId")
        return str(run_id), "llmonitor", str(parent) if parent not in (None, "") else None
    sid = meta.get("session_id", data.get("session_id"))
    return (str(sid), "session", None) if sid not in (None, "") else None


# --- LLMonitor -------------------------------------------------------------------------------
def llmonitor(event: Event) -> dict[str, Any] | None:
    """The original LLMonitor fields, when this is an LLMonitor event with a run id."""
    if event.source != LLMONITOR:
        return None
    meta = event.metadata
    return meta if meta.get("runId") not in (None, "") else None


def complete_name(event: Event, run_name: str | None) -> None:
    """Give a nameless LLMonitor event its run's name: `command` = `type:name`, and `model` =
    name for llm runs (CONTRACT §5)."""
    lm = llmonitor(event)
    if lm is None or lm.get("name") or not run_name:
        return
    run_type = str(lm.get("type") or "")
    event.data["command"] = f"{run_type}:{run_name}"
    if run_type == "llm" and not event.model:
        event.data["model"] = event.model = run_name
    event.changed = True


# --- webhook ---------------------------------------------------------------------------------
def session_id(event: Event) -> str | None:
    if event.source == LLMONITOR:
        return None
    value = event.metadata.get("session_id", event.data.get("session_id"))
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def webhook_tokens(event: Event) -> tuple[int, int]:
    """(prompt, completion): `metadata.tokens` counts as completion tokens, unless
    `prompt_tokens` / `completion_tokens` are given (CONTRACT §5)."""
    if event._tokens is None:
        event._tokens = _webhook_tokens(event.metadata)
    return event._tokens


def _webhook_tokens(meta: dict[str, Any]) -> tuple[int, int]:
    prompt = _int(meta.get("prompt_tokens"))
    if "completion_tokens" in meta:
        completion = _int(meta.get("completion_tokens"))
    else:
        completion = _int(meta.get("tokens"))
    return prompt, completion


def duration_ms(event: Event) -> float | None:
    value = event.metadata.get("duration_ms", event.data.get("duration_ms"))
    return float(value) if is_finite_duration(value) else None
