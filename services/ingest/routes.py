"""The write routes: POST /api/open-wrapper, /api/report, /v1/runs/ingest (CONTRACT §1).

Lean on purpose: each route reads the raw body itself (size- and time-bounded), parses it once
with orjson, validates by hand (collecting every error with its location only when something
is wrong), normalises, and hands the entries to the group-commit publisher. The answer is sent
only after Redis acknowledged the XADDs. Request bodies are declared in OpenAPI through
`openapi_extra`, since FastAPI does not parse them.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from services.ingest.apps import AppRegistry
from services.ingest.auth import SIGNATURE_HEADER, bearer, signature_matches, token_matches
from services.ingest.backlog import BacklogMonitor
from services.ingest.body import check_content_type, parse_json, read_body
from services.ingest.deadline import Watchdog
from services.ingest.llmonitor import event_app, llmonitor_envelope, normalize_llmonitor
from services.ingest.metrics import IngestMetrics, reason_of
from services.ingest.normalize import Invalid, Normalized, TooDeep, encode_event, now_timestamp
from services.ingest.publisher import Entry, Publisher
from services.ingest.ratelimit import RateLimiter
from services.ingest.watcher import normalize_webhook, webhook_envelope
from shared.errors import (
    ErrorDetail,
    Forbidden,
    LlmwatchError,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from shared.keys import events_stream, partition_for
from shared.schemas import (
    LLMONITOR_REQUEST,
    WEBHOOK_BODY,
    IngestResults,
    LLMonitorEvent,
    Ok,
    json_body,
    problem_responses,
)
from shared.settings import Settings

WATCHER_PATH = "/api/open-wrapper"
LLMONITOR_PATHS = ("/v1/runs/ingest", "/api/report")
JSON = "application/json"
OK_BODY = b'{"ok":true}'
OK = Response(OK_BODY, media_type=JSON)  # sent as is by every 200 of the webhook (never mutated)


# The request headers the write routes look at (ASGI servers send names lower-cased).
CONTENT_TYPE, CONTENT_LENGTH, AUTHORIZATION = b"content-type", b"content-length", b"authorization"
SIGNATURE = SIGNATURE_HEADER.encode()
WANTED = frozenset({CONTENT_TYPE, CONTENT_LENGTH, AUTHORIZATION, SIGNATURE})


def wanted_headers(scope: Scope) -> dict[bytes, str]:
    """The headers of `WANTED` in one pass, decoded; the first of a repeated one wins (as
    Starlette's `Headers.get`)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class Ingest:
    """The write side's request handling, with its collaborators injected. The handlers use
    only the request's ASGI scope and `receive` (no Starlette header or body helpers)."""

    def __init__(
        self,
        settings: Settings,
        *,
        publisher: Publisher,
        registry: AppRegistry,
        limiter: RateLimiter,
        backlog: BacklogMonitor,
        metrics: IngestMetrics,
        watchdog: Watchdog,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.registry = registry
        self.limiter = limiter
        self.backlog = backlog
        self.metrics = metrics
        self.watchdog = watchdog
        self.token = settings.secret("ingest_token")
        self.hmac_secret = settings.secret("ingest_hmac_secret")
        self.partitions = settings.partitions
        self.streams = [events_stream(p) for p in range(settings.partitions)]

    async def read(self, scope: Scope, receive: Receive) -> tuple[Any, dict[bytes, str]]:
        """Checks in order: rate limit per IP (429), bearer token (401), content type (415),
        size (413, before and while reading), read time (408), HMAC signature (401), JSON (400).
        Returns the parsed body and the headers read."""
        if self.limiter.per_ip:
            await self.limiter.check_ip(client_ip(scope))
        headers = wanted_headers(scope)
        if self.token is not None and not token_matches(
            bearer(headers.get(AUTHORIZATION)), self.token
        ):
            raise Unauthorized()
        check_content_type(headers.get(CONTENT_TYPE))
        settings = self.settings
        body = await read_body(
            receive,
            headers.get(CONTENT_LENGTH),
            settings.max_body_bytes,
            settings.body_timeout_s,
            self.watchdog,
        )
        if self.hmac_secret is not None and not signature_matches(
            body, headers.get(SIGNATURE), self.hmac_secret
        ):
            raise Unauthorized("missing or wrong X-Signature-256 body signature")
        return parse_json(body), headers

    async def webhook(self, request: Request) -> Response:
        """One DashboardEvent, or a batch: all-or-nothing."""
        metrics = self.metrics
        metrics.in_flight += 1
        count = 1
        try:
            envelope = webhook_envelope((await self.read(request.scope, request.receive))[0])
            if isinstance(envelope, Invalid):
                raise Unprocessable("request does not match the schema", errors=envelope.errors)
            count = len(envelope.events)
            if count > self.settings.max_batch:
                self._too_many(count)
            received = now_timestamp()
            accepted: list[Normalized] = []
            errors: list[ErrorDetail] = []
            for index, raw in enumerate(envelope.events):
                result = normalize_webhook(raw, envelope.location(index), received)
                if isinstance(result, Invalid):
                    errors.extend(result.errors)
                else:
                    accepted.append(result)
            if errors:
                bad = count - len(accepted)
                detail = f"{bad} of {count} events break the schema; nothing was published"
                raise Unprocessable(detail, errors=errors)
            await self.publisher.publish(self._entries(accepted))
            self._count("webhook", accepted)
            return OK
        except LlmwatchError as exc:
            metrics.count_rejected("webhook", reason_of(exc), count)
            raise
        finally:
            metrics.in_flight -= 1

    async def llmonitor(self, request: Request) -> Response:
        """LLMonitor/Lunary events: each judged alone (207 when some fail); an unregistered app
        id rejects the whole request (403)."""
        metrics = self.metrics
        metrics.in_flight += 1
        count = 1
        try:
            body, headers = await self.read(request.scope, request.receive)
            envelope = llmonitor_envelope(body)
            if isinstance(envelope, Invalid):
                raise Unprocessable("request does not match the schema", errors=envelope.errors)
            count = len(envelope.events)
            if count > self.settings.max_batch:
                self._too_many(count)
            bearer_app = None if self.token is not None else bearer(headers.get(AUTHORIZATION))
            results: list[dict[str, Any]] = []
            accepted: list[Normalized] = []
            claimed: dict[str, list[str]] = {}  # app id -> locations that claim it
            for index, raw in enumerate(envelope.events):
                location = envelope.location(index)
                app = event_app(raw, bearer_app)
                if app is not None:
                    from_body = isinstance(raw, dict) and raw.get("app") is not None
                    claimed.setdefault(app, []).append(
                        f"{location}.app" if from_body else "header.Authorization"
                    )
                result = normalize_llmonitor(raw, location, bearer_app)
                run_id = raw.get("runId") if isinstance(raw, dict) else None
                run_id = run_id if isinstance(run_id, str) else None
                if isinstance(result, Invalid):
                    message = "; ".join(f"{e.location}: {e.message}" for e in result.errors)
                    results.append({"id": run_id, "success": False, "error": message})
                else:
                    results.append({"id": run_id, "success": True})
                    accepted.append(result)
            if claimed:
                await self._check_apps(claimed)
                await self.limiter.check_apps(claimed)
            failed = count - len(accepted)
            if accepted:
                await self.publisher.publish(self._entries(accepted))
                self._count("llmonitor", accepted)
            if failed:
                metrics.count_rejected("llmonitor", "schema", failed)
            body = orjson.dumps({"results": results})
            return Response(body, status_code=207 if failed else 200, media_type=JSON)
        except LlmwatchError as exc:
            metrics.count_rejected("llmonitor", reason_of(exc), count)
            raise
        finally:
            metrics.in_flight -= 1

    def _too_many(self, count: int) -> None:
        limit = self.settings.max_batch
        raise PayloadTooLarge(
            f"{count} events in one request; at most {limit} (LLMWATCH_MAX_BATCH)"
        )

    async def _check_apps(self, claimed: dict[str, list[str]]) -> None:
        missing = await self.registry.unregistered(set(claimed))
        if missing:
            raise Forbidden(
                "app id not registered (`llmwatch apps add NAME`); nothing was published",
                errors=[
                    ErrorDetail(location, "app id not registered", app)
                    for app in missing
                    for location in claimed[app]
                ],
            )

    def _entries(self, accepted: list[Normalized]) -> list[Entry]:
        """What to XADD for the accepted events (a plain function, so that the request task
        awaits the publisher directly: every coroutine level costs on each resume). Raises
        Unprocessable for an event nested too deep and Unavailable (backpressure) for a
        partition over its backlog cap: nothing of the request is published then."""
        entries: list[Entry] = []
        used: list[int] = []
        streams, partitions = self.streams, self.partitions
        for item in accepted:
            partition = partition_for(item.routing_key, partitions) if partitions > 1 else 0
            used.append(partition)
            try:
                payload = encode_event(item.event)
            except TooDeep as exc:
                event_id = item.event.get("id")
                raise Unprocessable(
                    f"event {event_id} is {exc}; nothing was published",
                    errors=[ErrorDetail("body", str(exc), event_id)],
                ) from None
            entries.append((streams[partition], payload))
        if self.backlog.over and self.backlog.blocks(set(used)):
            exc = Unavailable(
                "event backlog over its cap (LLMWATCH_STREAM_MAX_BACKLOG); retry later",
                retry_after=self.settings.retry_after_s,
            )
            exc.reason = "backpressure"  # type: ignore[attr-defined]
            raise exc
        return entries

    def _count(self, source: str, accepted: list[Normalized]) -> None:
        metrics = self.metrics
        metrics.accepted[source] += len(accepted)
        for item in accepted:
            if item.undocumented:
                metrics.count_undocumented(source, item.undocumented)


WRITE_ERRORS = (400, 401, 408, 413, 415, 422, 429, 503)


def create_router(ingest: Ingest) -> APIRouter:
    router = APIRouter(tags=["ingest"])
    router.add_api_route(
        WATCHER_PATH,
        ingest.webhook,
        methods=["POST"],
        summary="LLM Watcher webhook: one DashboardEvent or a batch (all-or-nothing)",
        openapi_extra=json_body(
            WEBHOOK_BODY,
            'One DashboardEvent, `{"batch": true, "events": [...]}`, or an array of events',
        ),
        responses={
            200: {"model": Ok, "description": "published"},
            **problem_responses(*WRITE_ERRORS),
        },
    )
    llmonitor_doc = {
        "openapi_extra": json_body(
            LLMONITOR_REQUEST,
            '`{"events": [...]}`, a bare array of events, or one event. Each event is judged '
            "alone against `x-event-schema`: a failing one is reported in a 207",
            item_schema=LLMonitorEvent,
        ),
        "responses": {
            200: {"model": IngestResults, "description": "every event published"},
            207: {
                "model": IngestResults,
                "description": "the valid events published, the others listed",
            },
            **problem_responses(*WRITE_ERRORS, 403),
        },
    }
    summaries = ("LLMonitor/Lunary ingestion", "LLMonitor ingestion (older SDK path)")
    for path, summary in zip(LLMONITOR_PATHS, summaries, strict=True):
        router.add_api_route(
            path, ingest.llmonitor, methods=["POST"], summary=summary, **llmonitor_doc
        )
    return router
