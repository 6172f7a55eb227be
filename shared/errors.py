"""The project's exception tree. `problems.py` maps each class to one problem+json response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of a problem's `errors` list: where (e.g. `body.events[3].timestamp`) and why."""

    location: str
    message: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"location": self.location, "message": self.message, "value": self.value}


class LlmwatchError(Exception):
    """Base class: every error the service answers on purpose."""

    status: int = 500
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str = "",
        *,
        errors: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}


class BadRequest(LlmwatchError):
    status, title = 400, "Bad Request"


class Unauthorized(LlmwatchError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str = "missing or wrong bearer token", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(LlmwatchError):
    status, title = 403, "Forbidden"


class NotFound(LlmwatchError):
    status, title = 404, "Not Found"


class PayloadTooLarge(LlmwatchError):
    status, title = 413, "Content Too Large"


class UnsupportedMediaType(LlmwatchError):
    status, title = 415, "Unsupported Media Type"


class Unprocessable(LlmwatchError):
    status, title = 422, "Unprocessable Content"


class RequestTimeout(LlmwatchError):
    """The body did not arrive in time (a trickled, slowloris-style upload)."""

    status, title = 408, "Request Timeout"


class TooManyRequests(LlmwatchError):
    status, title = 429, "Too Many Requests"

    def __init__(self, detail: str = "rate limit exceeded", *, retry_after: int = 1, **kw: Any):
        kw.setdefault("headers", {"Retry-After": str(max(1, retry_after))})
        super().__init__(detail, **kw)


class Unavailable(LlmwatchError):
    """Redis unreachable, too slow, or backlog over its cap: the client should retry."""

    status, title = 503, "Service Unavailable"

    def __init__(self, detail: str = "event store unavailable", *, retry_after: int = 1, **kw: Any):
        kw.setdefault("headers", {"Retry-After": str(max(1, retry_after))})
        super().__init__(detail, **kw)


@dataclass
class Problem:
    """A ready-to-render RFC 9457 problem (used where raising is not convenient)."""

    status: int
    title: str
    detail: str
    errors: list[ErrorDetail] = field(default_factory=list)
