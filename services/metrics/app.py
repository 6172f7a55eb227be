"""The metrics service: the psutil sampler (system samples, pressure notifications,
`config.stale`) and `POST /api/reload`.

Its GET snapshots (`/api/system`, `/api/system/history`, `/api/info`) are served by the stream
gateway from the same Redis keys, so the front door routes only `POST /api/reload` here.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from services.metrics import ring
from services.metrics.config_watch import ConfigWatch, apply_live, digest
from services.metrics.sampler import Sampler, SamplerMetrics
from shared.access import require_admin
from shared.errors import ErrorDetail, Unprocessable
from shared.problems import validation_details
from shared.redis import ping
from shared.service import Context, Service
from shared.settings import config_path, load_settings

log = logging.getLogger(__name__)


def create_service(ctx: Context) -> Service:
    metrics = SamplerMetrics.create(ctx.registry)
    watch = ConfigWatch(config_path())
    sampler = Sampler(ctx, metrics, watch)

    async def system_sampler() -> None:
        await sampler.run()

    async def ready() -> str | None:
        return None if await ping(ctx.redis) else "redis unreachable"

    return Service(
        name="metrics",
        routers=[_reload_router(ctx, watch, metrics)],
        tasks=[system_sampler],
        ready=ready,
        state={"sampler": sampler, "watch": watch},
    )


def _reload_router(ctx: Context, watch: ConfigWatch, metrics: SamplerMetrics) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.post("/api/reload", summary="Re-read llmwatch.toml, apply what can change live")
    async def reload(request: Request) -> dict[str, Any]:
        require_admin(request, ctx.settings)
        path = config_path()
        seen = digest(path)  # before loading: a change made meanwhile shows as stale again
        try:
            fresh = load_settings()
        except ValidationError as exc:
            raise Unprocessable(
                f"{path} is invalid; nothing was applied",
                errors=validation_details(list(exc.errors()), ("config",)),
            ) from None
        except ValueError as exc:  # TOML syntax
            raise Unprocessable(
                f"{path} is not valid TOML; nothing was applied",
                errors=[ErrorDetail("config", str(exc)[:200])],
            ) from None
        applied, restart = apply_live(ctx.settings, fresh)
        if "log_level" in applied:
            logging.getLogger().setLevel(ctx.settings.log_level.upper())
        watch.mark_loaded(seen)
        metrics.config_stale.set(0)
        await ring.set_stale(ctx.redis, False)
        log.info(
            "config reloaded from %s: applied %s; restart needed for %s", path, applied, restart
        )
        return {
            "reloaded": True,
            "config": str(path),
            "applied": applied,
            "restart_required": restart,
        }

    return router
