"""The publisher's commands in Redis's wire format (RESP2), packed by hand. Pure: bytes out.

redis-py builds each command from its arguments one by one (encoding, length prefixes, a list
per command); the publisher sends one command shape millions of times, so its constant head is
packed once per stream and each entry adds only its value's length and bytes.
"""

from __future__ import annotations

from collections.abc import Iterable


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def command(*args: bytes) -> bytes:
    """Any command, as an array of bulk strings (what redis-py's pack_command sends)."""
    return b"*%d\r\n%b" % (len(args), b"".join(bulk(a) for a in args))


def xadd_head(stream: str, field: bytes) -> bytes:
    """`XADD <stream> * <field>` and the `$` of the value: the part every entry shares."""
    return b"*5\r\n" + b"".join(bulk(a) for a in (b"XADD", stream.encode(), b"*", field)) + b"$"


def pack_xadds(
    heads: dict[str, bytes], field: bytes, entries: Iterable[tuple[str, bytes]]
) -> list[bytes]:
    """`XADD <stream> * <field> <value>` per (stream, value); `heads` caches each stream's head."""
    out = []
    for stream, value in entries:
        head = heads.get(stream)
        if head is None:
            head = heads[stream] = xadd_head(stream, field)
        out.append(b"%b%d\r\n%b\r\n" % (head, len(value), value))
    return out


def wait(replicas: int, timeout_ms: int) -> bytes:
    """`WAIT <replicas> <timeout>`: block until that many replicas acknowledged every write this
    connection made before it, or the timeout passed (0 would mean forever: at least 1 ms)."""
    return command(b"WAIT", b"%d" % replicas, b"%d" % max(1, timeout_ms))
