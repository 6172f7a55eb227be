"""Who may read: `LLMWATCH_READ_TOKEN`, when set, guards every read route and feed.

The token comes as `Authorization: Bearer <token>` or, for EventSource (which cannot send
headers), `?token=`. The admin token is accepted wherever the read token is. Unset: open.
Admin routes take the admin token as a bearer only (never in a URL, where proxies log it).
Tokens are compared with `hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from shared.errors import Unauthorized
from shared.settings import Settings


def _bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _matches(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def given_token(request: Request) -> str | None:
    return _bearer(request.headers.get("authorization")) or request.query_params.get("token")


def require_read(request: Request, settings: Settings) -> None:
    expected = settings.secret("read_token")
    if expected is None:
        return
    token = given_token(request)
    if not (_matches(token, expected) or _matches(token, settings.secret("admin_token"))):
        raise Unauthorized("missing or wrong read token")


def require_admin(request: Request, settings: Settings) -> None:
    """The admin token when it is set. Without one, admin routes (dead letters hold whole
    event payloads) are still no more open than the read routes: the read token applies."""
    expected = settings.secret("admin_token")
    if expected is None:
        require_read(request, settings)
        return
    if not _matches(_bearer(request.headers.get("authorization")), expected):
        raise Unauthorized("missing or wrong admin token")
