"""The LLMonitor app registry: which app ids may post events (CONTRACT §1.3).

Redis is the truth (hash `keys.APPS`: app id → JSON {id, name, created_at}); each ingest
process keeps a short cache so the hot path rarely asks. Ids from `LLMWATCH_APPS` are accepted
at once and written to Redis in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from services.ingest.auth import bearer, token_matches
from services.ingest.body import check_content_type, parse_json, read_body
from services.ingest.normalize import missing, now_timestamp, wrong_type
from shared.errors import ErrorDetail, Unauthorized, Unavailable, Unprocessable
from shared.keys import APPS
from shared.redis import Client
from shared.schemas import App, AppCreate, AppList, json_body, problem_responses
from shared.settings import Settings

T = TypeVar("T")

log = logging.getLogger(__name__)

POSITIVE_TTL_S = 30.0  # apps are never removed, so a "yes" may be remembered a while
NEGATIVE_TTL_S = 1.0  # a "no" only briefly: `llmwatch apps add` must take effect at once


def _record(app_id: str, name: str) -> dict[str, Any]:
    return {"id": app_id, "name": name, "created_at": now_timestamp()}


async def add_app(redis: Client, name: str) -> dict[str, Any]:
    """Register a new app; returns {id, name, created_at}. The id is a UUID, as Lunary's are."""
    app = _record(str(uuid.uuid4()), name)
    await redis.hset(APPS, app["id"], orjson.dumps(app))
    return app


async def ensure_app(redis: Client, app_id: str, name: str | None = None) -> bool:
    """Register a given id unless it exists (LLMWATCH_APPS). True when newly added."""
    return bool(await redis.hsetnx(APPS, app_id, orjson.dumps(_record(app_id, name or app_id))))


async def list_apps(redis: Client) -> list[dict[str, Any]]:
    rows = await redis.hgetall(APPS)
    apps = [orjson.loads(raw) for raw in rows.values()]
    return sorted(apps, key=lambda a: (a.get("created_at", ""), a.get("name", ""), a["id"]))


class AppRegistry:
    """`is_registered` with a per-process cache in front of Redis."""

    def __init__(
        self, redis: Client, configured: list[str], *, timeout_s: float, retry_after_s: int = 1
    ) -> None:
        self._redis = redis
        self._configured = list(dict.fromkeys(configured))
        self._pinned = frozenset(self._configured)
        self._cache: dict[str, tuple[bool, float]] = {}
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s

    def remember(self, app_id: str) -> None:
        self._cache[app_id] = (True, time.monotonic() + POSITIVE_TTL_S)

    async def unregistered(self, app_ids: set[str]) -> list[str]:
        """The ids among `app_ids` that are not registered (one round trip for the misses)."""
        now = time.monotonic()
        unknown: list[str] = []
        missing: list[str] = []
        for app_id in app_ids:
            if app_id in self._pinned:
                continue
            cached = self._cache.get(app_id)
            if cached is not None and cached[1] > now:
                if not cached[0]:
                    missing.append(app_id)
                continue
            unknown.append(app_id)
        if unknown:
            try:
                async with asyncio.timeout(self._timeout_s):
                    found = await self._redis.hmget(APPS, unknown)
            except Exception:  # noqa: BLE001 - cannot tell: retryable, never 500
                raise Unavailable(
                    "app registry unavailable, retry shortly", retry_after=self._retry_after_s
                ) from None
            if len(self._cache) > 10_000:
                self._cache.clear()  # bounded: a flood of random ids cannot grow it forever
            for app_id, row in zip(unknown, found, strict=True):
                known = row is not None
                self._cache[app_id] = (known, now + (POSITIVE_TTL_S if known else NEGATIVE_TTL_S))
                if not known:
                    missing.append(app_id)
        return sorted(missing)

    async def is_registered(self, app_id: str) -> bool:
        return not await self.unregistered({app_id})

    async def register_configured(self, stopping: asyncio.Event) -> None:
        """Background task: write LLMWATCH_APPS ids to Redis (retrying while it is down), then
        idle until shutdown."""
        pending = list(self._configured)
        while pending and not stopping.is_set():
            try:
                for app_id in list(pending):
                    if await ensure_app(self._redis, app_id):
                        log.info("registered app %s from LLMWATCH_APPS", app_id)
                    pending.remove(app_id)
            except Exception as exc:  # noqa: BLE001 - Redis not there yet: try again shortly
                log.warning("cannot register LLMWATCH_APPS yet: %r", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stopping.wait()
        await stopping.wait()


def create_router(redis: Client, registry: AppRegistry, settings: Settings) -> APIRouter:
    """POST /api/apps (201) and GET /api/apps, behind LLMWATCH_ADMIN_TOKEN when it is set."""
    router = APIRouter(tags=["apps"])
    admin_token = settings.secret("admin_token")
    timeout_s, retry_after = settings.publish_timeout_s, settings.retry_after_s

    def require_admin(request: Request) -> None:
        if admin_token is not None and not token_matches(
            bearer(request.headers.get("authorization")), admin_token
        ):
            raise Unauthorized("missing or wrong admin bearer token (LLMWATCH_ADMIN_TOKEN)")

    async def bounded(coro: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await coro
        except Exception:  # noqa: BLE001 - Redis down or slow: retryable, never 500
            raise Unavailable(
                "app registry unavailable, retry shortly", retry_after=retry_after
            ) from None

    @router.post(
        "/api/apps",
        status_code=201,
        summary="Register an LLMonitor app; answers its new id",
        openapi_extra=json_body(AppCreate, '`{"name": "my-app"}`'),
        responses={
            201: {"model": App, "description": "registered"},
            **problem_responses(400, 401, 408, 413, 415, 422, 503),
        },
    )
    async def create_app(request: Request) -> Response:
        require_admin(request)
        check_content_type(request.headers.get("content-type"))
        body = await read_body(
            request.receive,
            request.headers.get("content-length"),
            64 * 1024,
            settings.body_timeout_s,
        )
        data = parse_json(body)
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(data, dict) or "name" not in data:
            raise Unprocessable("request does not match the schema", errors=[missing("body.name")])
        if not isinstance(name, str):
            raise Unprocessable(
                "request does not match the schema",
                errors=[wrong_type("body.name", "a string", name)],
            )
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise Unprocessable(
                "request does not match the schema",
                errors=[ErrorDetail("body.name", "must be 1 to 200 characters", data["name"])],
            )
        app = await bounded(add_app(redis, name))
        registry.remember(app["id"])
        return Response(orjson.dumps(app), status_code=201, media_type="application/json")

    @router.get(
        "/api/apps",
        summary="Registered LLMonitor apps, oldest first",
        response_model=AppList,
        responses=problem_responses(401, 503),
    )
    async def get_apps(request: Request) -> Response:
        require_admin(request)
        items = await bounded(list_apps(redis))
        return Response(orjson.dumps({"items": items}), media_type="application/json")

    return router
