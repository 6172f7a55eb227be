"""The reference server: a bare ASGI app that reads the body and answers `{"ok":true}`.

Run by uvicorn exactly as `llmwatch serve` runs its app (1 worker, uvloop, httptools), so the
ratio ingest ÷ this is what llmwatch's validation, normalisation and XADD cost on top of the
HTTP stack itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

OK = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(OK)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": OK})


def fastapi_factory() -> FastAPI:
    """A diagnostic second reference: FastAPI with one POST route returning `{"ok":true}`, run
    the same way. It shows how much of ingest's gap is the framework (routing, middleware,
    dependency solving, response classes) rather than llmwatch's own work."""
    api = FastAPI()

    @api.post("/")
    async def ok(request: Request) -> Response:
        await request.body()
        return Response(OK, media_type="application/json")

    return api


SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def sse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The memory reference for an idle SSE client: a bare ASGI stream that sends one comment and
    then only waits for the disconnect, the least any Python SSE server can hold per client."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    await send({"type": "http.response.body", "body": b": hi\n\n", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass
