"""The dashboard: static files served by the stream gateway at `/`.

No build step: `static/` holds plain HTML, CSS and ES modules, shipped as package data. The page
itself holds no data, so it is served without the read token; every API call it makes carries the
token (`?token=` in the page URL is forwarded), and the API routes enforce it.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from shared.service import Context

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PREFIX = "/assets"  # clear of /api, /v1, /metrics, /healthz, /readyz

# The page renders everything with textContent, and this policy is the second line of defence:
# no inline script, no foreign origin, so an event field holding `<script>` cannot run anything.
CONTENT_SECURITY_POLICY = "; ".join(  # noqa: FLY002 - one directive per line reads better
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page URL may carry ?token=
    # Revalidate every time (ETag/Last-Modified make that a 304): an upgrade shows at once.
    "Cache-Control": "no-cache",
}


class _Assets(StaticFiles):
    """StaticFiles with the dashboard's headers on every file it serves."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def create_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    index = STATIC_DIR / "index.html"

    @router.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    router.mount(ASSETS_PREFIX, _Assets(directory=STATIC_DIR, follow_symlink=False), name="assets")
    return router
