"""The two live feeds: `GET /api/events` (LLM Watcher) and `GET /api/stream` (RunWisp).

Both are fast routes (`shared/fastpath.py`): served as plain ASGI, past FastAPI's routing,
dependency injection and middleware, whose frames would otherwise stay alive (and in memory)
for as long as each stream is open. The FastAPI routes below document them (and answer HEAD);
the query is checked by hand the same way: a bad value is 422 problem+json. A cursor is never
refused: one this gateway cannot resume (garbage, too long, another layout) gets `reset`, so an
EventSource that reconnects with it (`?lastEventId=`) is not stuck on an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import APIRouter, Query, Request
from prometheus_client import Counter
from starlette.datastructures import QueryParams
from starlette.responses import Response

from services.stream import feeds
from services.stream.feeds import Feed
from services.stream.hub import Hub
from services.stream.limits import StreamLimits
from services.stream.metrics import StreamMetrics
from services.stream.replay import SNAPSHOT_MAX
from services.stream.response import Plan, SseResponse
from services.stream.subscriber import Subscriber
from shared import cursor
from shared.access import require_read
from shared.errors import ErrorDetail, TooManyRequests, Unavailable, Unprocessable
from shared.settings import Settings

EVENTS_PATH, STREAM_PATH = "/api/events", "/api/stream"
FEED_PATHS = frozenset({EVENTS_PATH, STREAM_PATH})
START_WAIT_S = 5.0  # a request arriving while the reader connects waits this long, then 503
MAX_FILTER_TEXT = 2000


def _text(query: QueryParams, name: str, limit: int) -> str | None:
    value = query.get(name)
    if value is not None and len(value) > limit:
        raise Unprocessable(
            "request does not match the schema",
            errors=[ErrorDetail(f"query.{name}", f"at most {limit} characters", value[:200])],
        )
    return value


def _snapshot(query: QueryParams) -> int:
    value = query.get("snapshot")
    if value is None:
        return 0
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise Unprocessable(
            "request does not match the schema",
            errors=[ErrorDetail("query.snapshot", "a whole number >= 0", value[:200])],
        )
    return min(count, SNAPSHOT_MAX)


def _filter(events: str | None) -> frozenset[bytes] | None:
    try:
        return feeds.parse_filter(events)
    except ValueError as exc:
        raise Unprocessable(
            "invalid event filter", errors=[ErrorDetail("query.events", str(exc), events)]
        ) from None


@dataclass
class Gateway:
    settings: Settings
    hub: Hub
    limits: StreamLimits
    metrics: StreamMetrics
    sent: dict[Feed, Counter] = field(init=False)  # events_sent per feed, looked up once

    def __post_init__(self) -> None:
        self.sent = {feed: self.metrics.events_sent.labels(feed.value) for feed in Feed}

    def plan(self, last_id: str | None, snapshot: int) -> Plan:
        if not last_id:
            return Plan(snapshot=snapshot)
        try:
            parsed = cursor.decode(last_id.strip())
        except cursor.CursorError:
            return Plan(reset="invalid", snapshot=snapshot)
        if parsed.partitions != self.hub.partitions:
            return Plan(reset="layout", snapshot=snapshot)
        if parsed.epoch != self.hub.epoch:
            return Plan(reset="epoch", snapshot=snapshot)
        return Plan(resume=list(parsed.vector))

    async def events(self, request: Request) -> Response:
        """`GET /api/events` as a fast route."""
        query = request.query_params
        snapshot = _snapshot(query)
        return await self.open(request, Feed.EVENTS, None, snapshot, query.get("lastEventId"))

    async def stream(self, request: Request) -> Response:
        """`GET /api/stream` as a fast route."""
        query = request.query_params
        names = _filter(_text(query, "events", MAX_FILTER_TEXT))
        return await self.open(request, Feed.STREAM, names, 0, query.get("lastEventId"))

    async def open(
        self, request: Request, feed: Feed, names: frozenset[bytes] | None, snapshot: int,
        last_id_query: str | None,
    ) -> Response:  # fmt: skip
        settings = self.settings
        require_read(request, settings)
        if not self.hub.started.is_set():
            try:
                await asyncio.wait_for(self.hub.started.wait(), START_WAIT_S)
            except TimeoutError:
                raise Unavailable(
                    "live feed not connected to Redis yet", retry_after=settings.retry_after_s
                ) from None
        # The header wins: a browser reconnecting sends it with the original URL, whose
        # ?lastEventId= is older.
        last_id = request.headers.get("last-event-id") or last_id_query
        plan = self.plan(last_id, snapshot)
        ip = request.client.host if request.client else "unknown"
        refused = self.limits.acquire(ip, settings.sse_max_streams, settings.sse_max_per_ip)
        if refused is not None:
            self.metrics.refused.labels(refused).inc()
            what = "this process" if refused == "process" else "your address"
            raise TooManyRequests(
                f"too many live streams for {what}", retry_after=settings.retry_after_s
            )
        return SseResponse(self, Subscriber(feed, names, ip, settings.sse_queue_frames), plan)


def create_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=["live feeds"])
    cursor_max = cursor.max_text(gateway.settings.partitions)  # the longest this layout issues

    @router.get(
        EVENTS_PATH,
        summary="LLM Watcher live feed (SSE): one unnamed data message per event",
        response_class=Response,
    )
    async def events(
        request: Request,
        snapshot: int = Query(
            0, ge=0, description=f"first send the N newest history events (max {SNAPSHOT_MAX})"
        ),
        last_event_id: str | None = Query(None, alias="lastEventId", max_length=cursor_max),
    ) -> Response:
        return await gateway.open(
            request, Feed.EVENTS, None, min(snapshot, SNAPSHOT_MAX), last_event_id
        )

    @router.get(
        STREAM_PATH,
        summary="RunWisp live feed (SSE): named events, optional ?events= filter",
        response_class=Response,
    )
    async def stream(
        request: Request,
        events: str | None = Query(
            None, description="comma-separated event names to receive", max_length=MAX_FILTER_TEXT
        ),
        last_event_id: str | None = Query(None, alias="lastEventId", max_length=cursor_max),
    ) -> Response:
        return await gateway.open(request, Feed.STREAM, _filter(events), 0, last_event_id)

    return router
