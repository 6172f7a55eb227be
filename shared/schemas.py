"""Public shapes as pydantic models: the stored DashboardEvent (read side reuses it), the two
ingest input formats, ingest answers and problem+json — for the OpenAPI document and for
readers of the event stream.

The ingest hot path does not validate with these models (services/ingest/watcher.py and
llmonitor.py check by hand, collecting every error); these describe the same rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# Epoch milliseconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: what a timestamp
# given as a number may span.
EPOCH_MS_MIN, EPOCH_MS_MAX = -62_135_596_800_000, 253_402_300_799_999
EpochMs = Annotated[float, Field(ge=EPOCH_MS_MIN, le=EPOCH_MS_MAX)]
EventTimestamp = datetime | EpochMs  # RFC 3339 string, or epoch milliseconds

# LLMonitor `event` → DashboardEvent (event_type, status), CONTRACT §2. `chat` records one message
# of a conversation (Lunary threads): a request, but informational — it neither starts nor ends
# a run.
LLMONITOR_EVENT_MAP: dict[str, tuple[str, str]] = {
    "start": ("request", "start"),
    "end": ("completion", "completed"),
    "error": ("error", "failed"),
    "feedback": ("status", "info"),
    "update": ("status", "info"),
    "chat": ("request", "info"),
}


class DashboardEvent(BaseModel):
    """One event as stored in the stream (field `e`), in history and on the SSE feeds."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        description="client id, a new UUID when missing, or uuid5(runId|event|timestamp)"
    )
    timestamp: str = Field(description="RFC 3339, UTC, `Z` suffix; receive time when missing")
    event_type: str = Field(description="request streaming completion error setup status system")
    command: str
    status: str = Field(description="start running completed failed info (aliases normalised)")
    model: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: Literal["webhook", "llmonitor"]


class DashboardEventIn(BaseModel):
    """What a client posts to /api/open-wrapper. Other top-level fields move into `metadata`."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    timestamp: EventTimestamp | Literal[""] | None = Field(
        None, description="receive time when missing, null or empty"
    )
    event_type: str = Field(min_length=1)
    command: str = Field(min_length=1)
    status: str = Field(min_length=1)
    model: str | None = None
    metadata: dict[str, Any] | None = None
    source: Any = Field(None, description="ignored: always overwritten to `webhook`")


class WebhookBatch(BaseModel):
    """Any object without `event_type` that has `events` is a batch, whatever `batch` holds."""

    model_config = ConfigDict(extra="allow")

    batch: Any = Field(True, description="`true` by convention; optional")
    events: list[DashboardEventIn]


class TokensUsage(BaseModel):
    prompt: float | None = Field(None, ge=0)
    completion: float | None = Field(None, ge=0)


class RunError(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str | None = None
    stack: str | None = None


class LLMonitorEvent(BaseModel):
    """One LLMonitor/Lunary event. `app` may come from `Authorization: Bearer <app id>`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        min_length=1, description="llm agent tool chain chat convo thread embed retriever"
    )
    event: str = Field(min_length=1, description="start end error feedback chat update")
    app: str | None = Field(None, min_length=1)
    runId: str = Field(min_length=1)
    parentRunId: str | None = None
    timestamp: EventTimestamp
    name: str | None = None
    input: Any = None
    output: Any = None
    tags: list[str] | None = None
    extra: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None
    tokensUsage: TokensUsage | None = None
    error: RunError | str | None = None


class LLMonitorBatch(BaseModel):
    events: list[LLMonitorEvent] | LLMonitorEvent


class LLMonitorEnvelope(BaseModel):
    """What decides 400/422 for an LLMonitor request: only the envelope. Each event is judged on
    its own against `LLMonitorEvent` (a failing one is reported in a 207, not refused)."""

    model_config = ConfigDict(extra="allow")

    events: list[Any] | dict[str, Any]


class Ok(BaseModel):
    ok: Literal[True] = True


class IngestResult(BaseModel):
    id: str | None = Field(description="the event's runId")
    success: bool
    error: str | None = Field(None, description="`<location>: <message>` when success is false")


class IngestResults(BaseModel):
    results: list[IngestResult]


class AppCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S", description="trimmed")


class App(BaseModel):
    id: str
    name: str
    created_at: str


class AppList(BaseModel):
    items: list[App]


class ProblemError(BaseModel):
    location: str = Field(examples=["body.events[3].timestamp"])
    message: str
    value: Any = None


class Problem(BaseModel):
    """RFC 9457 problem details, RunWisp/huma shape."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemError] = Field(default_factory=list)


WEBHOOK_BODY = DashboardEventIn | WebhookBatch | list[DashboardEventIn]
LLMONITOR_BODY = LLMonitorBatch | list[LLMonitorEvent] | LLMonitorEvent
# The request-level schema of the LLMonitor routes (per-event rules in LLMONITOR_BODY).
LLMONITOR_REQUEST = LLMonitorEnvelope | list[Any] | dict[str, Any]


def inline_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of a type with every `$ref` replaced by its definition, so it can sit in
    an operation's `requestBody` without touching the document's components."""
    schema = TypeAdapter(tp).json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def json_body(tp: Any, description: str, item_schema: Any = None) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON request body the route reads itself. `item_schema`, when
    given, documents the events as `x-event-schema` without making the request depend on it."""
    body: dict[str, Any] = {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": inline_schema(tp)}},
    }
    if item_schema is not None:
        body["x-event-schema"] = inline_schema(item_schema)
    return {"requestBody": body}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the problem+json answers a route can give."""
    descriptions = {
        400: "body is not JSON, or not an object/array",
        401: "missing or wrong bearer token or signature",
        403: "unregistered LLMonitor app id (nothing published)",
        408: "body not received in time",
        413: "body or batch too large",
        415: "content type given and not JSON",
        422: "schema violation; `errors` lists every bad location",
        429: "rate limit exceeded; see Retry-After",
        503: "Redis unreachable or too slow, or backlog over its cap; see Retry-After",
    }
    return {
        s: {
            "model": Problem,
            "description": descriptions.get(s, "error"),
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        for s in statuses
    }
