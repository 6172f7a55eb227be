"""RFC 9457 problem+json responses and the exception handlers that produce them.

Shape (RunWisp/huma): {"type","title","status","detail","instance","errors":[{location,message,value}]}.
Every error leaves through here, so client input can never surface as a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.errors import ErrorDetail, LlmwatchError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _safe_value(value: Any) -> Any:
    """Echo the offending value back only when it is small and JSON-safe."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        encoded = b""
    if encoded and len(encoded) <= 200:
        return value
    try:
        return repr(value)[:200]
    except RecursionError:  # e.g. a 1,000-level array a client sent: not echoed, never a 500
        return f"<{type(value).__name__} nested too deep to show>"


def problem_body(
    status: int,
    detail: str,
    *,
    instance: str = "",
    title: str | None = None,
    errors: list[ErrorDetail] | None = None,
) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
        "errors": [
            {"location": e.location, "message": e.message, "value": _safe_value(e.value)}
            for e in errors or []
        ],
    }


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str = "",
    title: str | None = None,
    errors: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(status, detail, instance=instance, title=title, errors=errors)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def from_error(exc: LlmwatchError, instance: str = "") -> Response:
    return problem_response(
        exc.status,
        exc.detail,
        instance=instance,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
    )


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_details(
    errors: list[dict[str, Any]], prefix: tuple[Any, ...] = ()
) -> list[ErrorDetail]:
    """pydantic error dicts → ErrorDetail with `body.events[3].timestamp`-style locations."""
    return [
        ErrorDetail(
            _location(prefix + tuple(e.get("loc", ()))), e.get("msg", "invalid"), e.get("input")
        )
        for e in errors
    ]


async def _llmwatch_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LlmwatchError)
    return from_error(exc, request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(
        exc.status_code, str(exc.detail), instance=request.url.path, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422,
        "request does not match the schema",
        instance=request.url.path,
        errors=validation_details(list(exc.errors())),
    )


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable on %s: %s", request.url.path, exc)
    return problem_response(
        503,
        "event store unavailable, retry shortly",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return problem_response(500, "internal error", instance=request.url.path)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LlmwatchError, _llmwatch_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
