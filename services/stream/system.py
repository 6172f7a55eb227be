"""Snapshots for a fresh dashboard: `/api/system`, `/api/system/history`, `/api/info`.

Served from Redis (the sampler's ring and flag), so every gateway replica answers the same.
"""

from __future__ import annotations

from typing import Any

import psutil
from fastapi import APIRouter, Request

from shared import system
from shared.access import require_read
from shared.service import Context
from shared.version import VERSION


def create_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["system"])
    settings = ctx.settings

    @router.get("/api/system", summary="Current system sample, uptime, CPU cores, version")
    async def current(request: Request) -> dict[str, Any]:
        require_read(request, settings)
        latest = await system.latest(ctx.redis)
        if latest is None:
            return {
                "sample": None,
                "uptime": None,
                "cpu_cores": psutil.cpu_count(),
                "version": VERSION,
            }
        return {
            "sample": latest.get("sample"),
            "uptime": latest.get("uptime"),
            "cpu_cores": latest.get("cpu_cores") or psutil.cpu_count(),
            "version": VERSION,
        }

    @router.get("/api/system/history", summary="The last 32 system samples, oldest first")
    async def history(request: Request) -> dict[str, Any]:
        require_read(request, settings)
        return {"items": await system.history(ctx.redis)}

    @router.get("/api/info", summary="Version, config staleness and layout")
    async def info(request: Request) -> dict[str, Any]:
        require_read(request, settings)
        return {
            "version": VERSION,
            "config_stale": await system.config_stale(ctx.redis),
            "partitions": settings.partitions,
            "environment": settings.environment,
            "sample_interval_s": settings.sample_interval_s,
            "history_max": settings.history_max,
            "sse_ping_s": settings.sse_ping_s,
            "read_token_required": settings.secret("read_token") is not None,
        }

    return router
