"""Bearer tokens and HMAC body signatures, compared in constant time. Pure: header values in,
a verdict out; the routes turn a refusal into 401 problem+json."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-signature-256"
SIGNATURE_PREFIX = "sha256="


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def token_matches(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature-256` value for a body (GitHub webhook style)."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, header: str | None, secret: str) -> bool:
    if not header:
        return False
    given = header.strip()
    if given[: len(SIGNATURE_PREFIX)].lower() != SIGNATURE_PREFIX:
        return False
    expected = sign(body, secret)
    candidate = SIGNATURE_PREFIX + given[len(SIGNATURE_PREFIX) :].lower()
    return hmac.compare_digest(candidate.encode("ascii", "replace"), expected.encode("ascii"))
