"""An experiment the ingest figure runs beside the service: ingest's own webhook handler
behind a raw ASGI front (no FastAPI routing, no middleware) for `POST /api/open-wrapper`.

It answers "how much would serving the hot write route outside FastAPI buy?" with a number
instead of a guess. Everything else (lifespan: publisher, Redis) is the real ingest app's. It
reaches into `Service.state["ingest"]` (documented for tests and sibling wiring); if that
changes, the figure simply leaves the experiment out.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from services.targets import create_app
from shared.settings import load_settings

PATH = "/api/open-wrapper"


def factory() -> Any:
    app = create_app(load_settings(), "ingest")
    ingest = app.state.services["ingest"].state["ingest"]

    async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
            response = await ingest.webhook(Request(scope, receive))
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return front
