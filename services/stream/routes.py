"""The two live feeds: `GET /api/events` (LLM Watcher) and `GET /api/stream` (RunWisp)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from services.stream import feeds
from services.stream.feeds import Feed
from services.stream.hub import Hub, Subscriber
from services.stream.limits import StreamLimits
from services.stream.metrics import StreamMetrics
from services.stream.replay import SNAPSHOT_MAX
from services.stream.response import Plan, SseResponse
from shared import cursor
from shared.access import require_read
from shared.errors import ErrorDetail, TooManyRequests, Unavailable, Unprocessable
from shared.settings import Settings

FEED_PATHS = frozenset({"/api/events", "/api/stream"})
START_WAIT_S = 5.0  # a request arriving while the reader connects waits this long, then 503


@dataclass
class Gateway:
    settings: Settings
    hub: Hub
    limits: StreamLimits
    metrics: StreamMetrics

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
        return Plan(resume=cursor.vector(parsed.position, len(self.hub.streams)))

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
        sub = Subscriber(feed, names, ip, settings.sse_queue_frames)
        return SseResponse(
            self.hub, self.metrics, sub, plan,
            ping_s=lambda: settings.sse_ping_s,
            send_timeout_s=lambda: settings.sse_send_timeout_s,
            on_close=lambda: self.limits.release(ip),
        )  # fmt: skip


def create_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=["live feeds"])

    @router.get(
        "/api/events",  # in FEED_PATHS
        summary="LLM Watcher live feed (SSE): one unnamed data message per event",
        response_class=Response,
    )
    async def events(
        request: Request,
        snapshot: int = Query(
            0, ge=0, description=f"first send the N newest history events (max {SNAPSHOT_MAX})"
        ),
        last_event_id: str | None = Query(None, alias="lastEventId", max_length=200),
    ) -> Response:
        return await gateway.open(
            request, Feed.EVENTS, None, min(snapshot, SNAPSHOT_MAX), last_event_id
        )

    @router.get(
        "/api/stream",  # in FEED_PATHS
        summary="RunWisp live feed (SSE): named events, optional ?events= filter",
        response_class=Response,
    )
    async def stream(
        request: Request,
        events: str | None = Query(
            None, description="comma-separated event names to receive", max_length=2000
        ),
        last_event_id: str | None = Query(None, alias="lastEventId", max_length=200),
    ) -> Response:
        try:
            names = feeds.parse_filter(events)
        except ValueError as exc:
            raise Unprocessable(
                "invalid event filter", errors=[ErrorDetail("query.events", str(exc), events)]
            ) from None
        return await gateway.open(request, Feed.STREAM, names, 0, last_event_id)

    return router
