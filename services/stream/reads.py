"""Read APIs over the aggregator's state: history, stats, runs, notifications, dead letters.

None of them scans all events: stats merge each partition's counter hash, history and runs read
their sorted-set indexes page by page, notifications read the bell's id index. Each partition
is read by its own single-slot commands, sent together (`shared.redis.run_commands` or a plain
pipeline, which a Redis Cluster splits per shard) and merged here. Bad query parameters answer
422 problem+json (FastAPI validation, mapped in shared/problems.py).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, Response

from shared import history, keys, notify
from shared import stats as stats_view
from shared.access import require_admin, require_read
from shared.errors import ErrorDetail, NotFound, Unprocessable
from shared.redis import Client, Command, run_commands
from shared.service import Context

RUN_STATUSES = {
    "pending": ("status", "pending"),
    "running": ("status", "running"),
    "ended": ("status", "ended"),
    "success": ("end_reason", "success"),
    "completed": ("end_reason", "success"),
    "failed": ("end_reason", "failed"),
}
MAX_RUN_OFFSET = 10_000
ShortText = Annotated[str | None, Query(max_length=512)]


def create_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["read"])
    settings, redis = ctx.settings, ctx.redis
    partitions = settings.partitions

    @router.get("/api/history", summary="Events, newest first, with cursor pagination and filters")
    async def get_history(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        before: Annotated[str | None, Query(max_length=80)] = None,
        event_type: ShortText = None,
        model: ShortText = None,
        source: ShortText = None,
        q: ShortText = None,
    ) -> dict[str, Any]:
        require_read(request, settings)
        cursor = None
        if before:
            try:
                cursor = history.decode_cursor(before)
            except ValueError as exc:
                raise Unprocessable(
                    "invalid cursor", errors=[ErrorDetail("query.before", str(exc), before)]
                ) from None
        query = history.Query(
            limit=limit,
            before=cursor,
            event_type=event_type or None,
            model=model or None,
            source=source or None,
            q=q or None,
        )
        items, next_cursor = await history.read_page(redis, partitions, query)
        return {"items": items, "next_cursor": next_cursor}

    @router.get("/api/stats", summary="Totals, breakdowns, tokens, cost, runs, events/s")
    async def get_stats(request: Request) -> dict[str, Any]:
        require_read(request, settings)
        return await read_stats(redis, partitions)

    @router.get("/api/runs", summary="Runs, newest first (LLMonitor run trees, webhook sessions)")
    async def get_runs(
        request: Request,
        status: ShortText = None,
        task_name: ShortText = None,
        app: ShortText = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_RUN_OFFSET)] = 0,
    ) -> dict[str, Any]:
        require_read(request, settings)
        filters: list[tuple[str, str]] = []
        if status:
            if status not in RUN_STATUSES:
                allowed = ", ".join(sorted(RUN_STATUSES))
                raise Unprocessable(
                    "unknown status",
                    errors=[ErrorDetail("query.status", f"one of {allowed}", status)],
                )
            filters.append(RUN_STATUSES[status])
        filters += [(f, v) for f, v in (("task_name", task_name), ("app", app)) if v]
        items, total = await list_runs(redis, partitions, filters, limit, offset)
        return {"items": items, "total": total}

    @router.get("/api/runs/{run_id}", summary="One run with its children")
    async def get_run(
        request: Request, run_id: Annotated[str, Path(max_length=512)]
    ) -> dict[str, Any]:
        require_read(request, settings)
        run = await read_run(redis, partitions, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        return run

    @router.get("/api/notifications", summary="Notifications, newest first")
    async def get_notifications(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        require_read(request, settings)
        items, next_cursor = await notify.list_rows(redis, limit, before or None)
        return {"items": items, "next_cursor": next_cursor}

    @router.get("/api/notifications/unread-count", summary="How many notifications are unread")
    async def get_unread_count(request: Request) -> dict[str, int]:
        require_read(request, settings)
        return {"count": await notify.unread_count(redis)}

    @router.post("/api/notifications/read", status_code=204, summary="Mark every notification read")
    async def read_all(request: Request) -> Response:
        require_read(request, settings)
        await notify.read_all(redis, settings)
        return Response(status_code=204)

    async def mark(request: Request, notification_id: str, *, read: bool) -> Response:
        require_read(request, settings)
        if not await notify.set_read(redis, settings, notification_id, read):
            raise NotFound(f"no notification {notification_id!r}")
        return Response(status_code=204)

    @router.post(
        "/api/notifications/{notification_id}/read", status_code=204, summary="Mark one read"
    )
    async def read_one(
        request: Request, notification_id: Annotated[str, Path(max_length=64)]
    ) -> Response:
        return await mark(request, notification_id, read=True)

    @router.post(
        "/api/notifications/{notification_id}/unread", status_code=204, summary="Mark one unread"
    )
    async def unread_one(
        request: Request, notification_id: Annotated[str, Path(max_length=64)]
    ) -> Response:
        return await mark(request, notification_id, read=False)

    @router.get("/api/deadletter", summary="Entries that failed processing 5 times (admin)")
    async def get_deadletter(
        request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        require_admin(request, settings)
        return {"items": await read_deadletters(redis, partitions, limit)}

    return router


async def read_stats(redis: Client, partitions: int) -> dict[str, Any]:
    now = int(time.time())
    seconds = list(range(now - 60, now))  # the last 60 complete seconds
    # Per partition, its counter hash and its last minute's per-second counts (one slot each):
    # partial aggregates merged here, so the cost grows with partitions, never with events.
    replies = await run_commands(
        redis, [c for p in range(partitions) for c in _stats_reads(p, seconds)]
    )
    counters = stats_view.merge(replies[::2])
    recent = sum(int(v) for counts in replies[1::2] for v in counts if v is not None)
    return stats_view.render(counters, recent)


def _stats_reads(partition: int, seconds: list[int]) -> list[Command]:
    stats_key = keys.stats_key(partition)
    eps_keys = [keys.eps_key(partition, s) for s in seconds]
    return [lambda r: r.hgetall(stats_key), lambda r: r.mget(eps_keys)]


async def list_runs(
    redis: Client, partitions: int, filters: list[tuple[str, str]], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    need = offset + limit
    single = len(filters) <= 1
    async with redis.pipeline(transaction=False) as pipe:
        for p in range(partitions):
            indexes = [keys.runs_index(p, f, v) for f, v in filters] or [keys.runs_index(p)]
            if single:
                pipe.zrevrange(indexes[0], 0, need - 1, withscores=True)
                pipe.zcard(indexes[0])
            else:  # several filters: intersect (bounded by the smallest index)
                pipe.zinter(indexes, aggregate="MAX", withscores=True)
        replies = await pipe.execute()
    ranked: list[tuple[float, str, int]] = []
    total = 0
    for p in range(partitions):
        if single:
            members, card = replies[2 * p], int(replies[2 * p + 1])
        else:
            members = replies[p]
            card = len(members)
        total += card
        ranked += [(score, member.decode(), p) for member, score in members]
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    page = ranked[offset:need]
    if not page:
        return [], total
    async with redis.pipeline(transaction=False) as pipe:
        for _, run_id, p in page:
            pipe.hget(keys.run_key(p, run_id), "v")
        views = await pipe.execute()
    return [orjson.loads(v) for v in views if v is not None], total


async def read_run(redis: Client, partitions: int, run_id: str) -> dict[str, Any] | None:
    """The run (from its own partition) with `children` (gathered from every partition)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.run_key(keys.partition_for(run_id, partitions), run_id), "v")
        for p in range(partitions):
            pipe.smembers(keys.run_children(p, run_id))
        view, *child_sets = await pipe.execute()
    if view is None:
        return None
    run = orjson.loads(view)
    children = sorted({c.decode() for members in child_sets for c in members})
    async with redis.pipeline(transaction=False) as pipe:
        for child in children:
            pipe.hget(keys.run_key(keys.partition_for(child, partitions), child), "v")
        child_views = await pipe.execute() if children else []
    run["children"] = sorted(
        (orjson.loads(v) for v in child_views if v is not None),
        key=lambda c: (c.get("start_at") or c.get("created_at") or "", c["id"]),
    )
    return run


async def read_deadletters(redis: Client, partitions: int, limit: int) -> list[dict[str, Any]]:
    async with redis.pipeline(transaction=False) as pipe:
        for p in range(partitions):
            pipe.xrevrange(keys.deadletter_stream(p), count=limit)
        replies = await pipe.execute()
    items: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for p, entries in enumerate(replies):
        for entry_id, fields in entries:
            text_id = entry_id.decode()
            ms, _, seq = text_id.partition("-")
            items.append(((int(ms), int(seq)), _letter(p, text_id, fields)))
    items.sort(key=lambda i: i[0], reverse=True)
    return [letter for _, letter in items[:limit]]


def _letter(partition: int, entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    def text(name: str) -> str | None:
        value = fields.get(name.encode())
        return value.decode("utf-8", "replace") if value is not None else None

    raw = fields.get(keys.EVENT_FIELD)
    try:
        event: Any = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        event = raw.decode("utf-8", "replace") if raw is not None else None
    deliveries = text("deliveries")
    at = text("at")
    return {
        "id": entry_id,
        "partition": partition,
        "source_id": text("id"),
        "error": text("error"),
        "deliveries": int(deliveries) if deliveries and deliveries.isdigit() else None,
        "consumer": text("consumer"),
        "at": float(at) if at else None,
        "event": event,
    }
