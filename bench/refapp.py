"""The reference server: a bare ASGI app that reads the body and answers `{"ok":true}`.

Run by uvicorn exactly as `llmwatch serve` runs its app (1 worker, uvloop, httptools), so the
ratio ingest ÷ this is what llmwatch's validation, normalisation and XADD cost on top of the
HTTP stack itself.
"""

from __future__ import annotations

from typing import Any

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
