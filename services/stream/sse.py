"""Server-Sent Events wire framing (WHATWG HTML, "Server-sent events"), as pure functions.

A frame is `id:`/`event:` lines, one `data:` line per line of the payload, and a blank line.
Names and ids come from our own code, but they are checked anyway: a CR or LF in either would
let a value start a new field or a new event (header injection), and the spec drops ids with NUL.
"""

from __future__ import annotations

_FORBIDDEN = ("\r", "\n", "\0")


class FrameError(ValueError):
    pass


def _field(name: str, value: str | bytes) -> bytes:
    text = value.decode("utf-8", "strict") if isinstance(value, bytes) else value
    if any(ch in text for ch in _FORBIDDEN):
        raise FrameError(f"SSE {name} must not contain CR, LF or NUL")
    return f"{name}: {text}\n".encode()


# JSON leaves U+2028, U+2029 and U+0085 unescaped, and clients that split lines the way Python
# does (`str.splitlines`: httpx's `aiter_lines`, hence httpx-sse) would cut a message there,
# although the spec splits only on CR and LF. In JSON they can only sit inside strings, where
# the `\uXXXX` escape is the same value. (A lead byte never continues a character, so these
# byte sequences are always those characters.)
_LINE_LIKE = (
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
    (b"\xc2\x85", b"\\u0085"),
)


def json_data(data: bytes) -> bytes:
    """A JSON payload with the characters some clients take for line breaks escaped."""
    for raw, escaped in _LINE_LIKE:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def _data_lines(data: bytes) -> bytes:
    if b"\n" not in data and b"\r" not in data:
        return b"data: " + data + b"\n"
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join(b"data: " + line + b"\n" for line in lines)


def frame(data: bytes, *, event: str | bytes | None = None, id: str | None = None) -> bytes:
    """One complete message. `event=None` is an unnamed message (`onmessage` in a browser)."""
    head = b""
    if id is not None:
        head += _field("id", id)
    if event is not None:
        head += _field("event", event)
    return head + _data_lines(data) + b"\n"


def comment(text: str = "") -> bytes:
    """A comment line: ignored by clients, keeps proxies and idle connections alive. No blank
    line after it: some parsers (httpx-sse) would turn a blank line into an empty message once an
    id has been seen, though the spec dispatches nothing for it."""
    if any(ch in text for ch in _FORBIDDEN):
        raise FrameError("SSE comment must not contain CR, LF or NUL")
    return f": {text}\n".encode()


PING = frame(b"{}", event="ping")
KEEPALIVE = comment("ping")
# The gateway lost / regained Redis: open streams stay open (and resume gap-free), but clients
# are told, without an id, so a dashboard can show it. /api/events gets comments: LLM Watcher
# clients only know unnamed messages.
UNAVAILABLE = frame(b'{"redis":"unavailable"}', event="unavailable")
AVAILABLE = frame(b'{"redis":"available"}', event="available")
UNAVAILABLE_COMMENT = comment("redis unavailable")
AVAILABLE_COMMENT = comment("redis available")
