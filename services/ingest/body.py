"""Reading a request body safely: content type, size (before and while reading), time, JSON.

The write routes read the raw body themselves (not through FastAPI's body parameters) so that a
huge or trickled upload is refused before it is held in memory, and the valid case pays only
for one orjson parse.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.types import Message, Receive

from services.ingest.deadline import TaskTimer, Watchdog
from shared.errors import (
    BadRequest,
    ErrorDetail,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)


def check_content_type(value: str | None) -> None:
    """No content type, `application/json` or `application/<anything>+json` (any parameters);
    anything else — including `text/plain` and form encodings — is 415."""
    if not value or not value.strip():
        return
    media = value.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"content type {media!r} is not JSON; send Content-Type: application/json"
    )


async def read_body(
    receive: Receive,
    content_length: str | None,
    max_bytes: int,
    timeout_s: float,
    watchdog: Watchdog | None = None,
) -> bytes:
    """The whole body, straight from ASGI `receive`: 413 past `max_bytes` (declared or read),
    408 when it takes longer than `timeout_s` (timed by `watchdog` when given: no timer of its
    own), 400 when the client goes away first."""
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise PayloadTooLarge(f"body of {content_length} bytes is over the limit of {max_bytes}")
    if watchdog is None:
        try:
            async with asyncio.timeout(timeout_s):
                return await _read(receive, max_bytes)
        except TimeoutError:
            raise RequestTimeout(f"body not received within {timeout_s:g} s") from None
    task = asyncio.current_task()
    assert task is not None  # ASGI handlers run in a task
    timer = TaskTimer(task, time.monotonic() + timeout_s)
    watchdog.arm(timer)
    try:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")  # the common case: all in one message
            if len(body) > max_bytes:
                raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
            return body
        return await _read(receive, max_bytes, message)
    except asyncio.CancelledError:
        if not timer.expired:
            raise
        task.uncancel()
        raise RequestTimeout(f"body not received within {timeout_s:g} s") from None
    finally:
        watchdog.disarm(timer)


async def _read(receive: Receive, max_bytes: int, message: Message | None = None) -> bytes:
    """From ASGI `receive` (not `request.stream()`: an async generator per request costs a
    loop-hook registration that showed in profiles); `message` is the first one if read."""
    if message is None:
        message = await receive()
    if message["type"] != "http.request":
        raise BadRequest("client disconnected before the body was read")
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one message
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
        return body
    chunks = [body]
    total = len(body)
    while True:
        if total > max_bytes:
            raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
        message = await receive()
        if message["type"] != "http.request":
            raise BadRequest("client disconnected before the body was read")
        chunk = message.get("body", b"")
        total += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if total > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any] | list[Any]:
    """orjson parse; 400 unless the top level is an object or an array (CONTRACT §5)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            "body is not valid JSON", errors=[ErrorDetail("body", str(exc), None)]
        ) from None
    if not isinstance(value, dict | list):
        raise BadRequest(
            "body must be a JSON object or array",
            errors=[ErrorDetail("body", "expected an object or an array", value)],
        )
    return value
