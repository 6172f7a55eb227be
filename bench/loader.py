"""Stored events in bulk: one realistic group posted through ingest becomes a template.

The group's events carry tokens (`zzE0001zz` event ids, `zzS0001zz` session/run ids) that
ingest's normalisation keeps verbatim; every copy replaces them with fresh values, so millions
of distinct, valid, already-normalised events can be XADDed straight into the events stream
(as ingest would have), far faster than HTTP could deliver them.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from bench import bodies
from bench.figures.common import events_stream, expect_ok
from bench.procs import Proc
from shared import keys

TOKEN = re.compile(rb"zz([ES])(\d{4})zz")
PIPELINE = 1000


class Template:
    """A stored event split around its tokens: pieces[0] t0 pieces[1] t1 ... pieces[n].

    An id ingest derived itself (LLMonitor: uuid5 of runId|event|timestamp) carries no token;
    it becomes one, so each copy gets its own id and the aggregator's dedup keeps them all.
    """

    def __init__(self, stored: bytes) -> None:
        self.pieces: list[bytes] = []
        self.tokens: list[bytes] = []
        pattern = TOKEN
        event_id = orjson.loads(stored).get("id")
        if isinstance(event_id, str) and not TOKEN.search(event_id.encode()):
            quoted = re.escape(orjson.dumps(event_id)[1:-1])
            pattern = re.compile(TOKEN.pattern + b"|(" + quoted + b")")
        last = 0
        for match in pattern.finditer(stored):
            self.pieces.append(stored[last : match.start()])
            if match.group(1):
                self.tokens.append(match.group(1) + match.group(2))
            else:
                self.tokens.append(match.group(0))
            last = match.end()
        self.pieces.append(stored[last:])

    def render(self, copy: bytes) -> bytes:
        out = [self.pieces[0]]
        for token, piece in zip(self.tokens, self.pieces[1:], strict=True):
            out += [token, copy, piece]
        return b"".join(out)


def templates(ingest: Proc, r: Any, partitions: int = 1) -> list[Template]:
    """Post the loader group through ingest (running with `partitions`) and read back what it
    stored."""
    streams = (
        [keys.events_stream(p) for p in range(partitions)] if partitions > 1 else [events_stream()]
    )
    for stream in streams:
        r.delete(stream)
    for path, body in bodies.loader_group():
        expect_ok(ingest, path, body)
    size = bodies.group_size()
    entries = [entry for stream in streams for entry in r.xrange(stream, count=size + 10)]
    for stream in streams:
        r.delete(stream)
    stored = [fields[keys.EVENT_FIELD] for _, fields in entries]
    if len(stored) != size:
        raise RuntimeError(f"expected {size} stored template events, found {len(stored)}")
    found = [Template(s) for s in stored]
    if not all(t.tokens for t in found):
        raise RuntimeError("ingest did not keep the template tokens; cannot make copies")
    return found


def load(
    r: Any, group: list[Template], count: int, *, start: int = 0, run: str = "x"
) -> list[bytes]:
    """XADD `count` events (whole copies of the group, rounded up); returns their stream ids."""
    stream = events_stream()
    ids: list[bytes] = []
    copies = -(-count // len(group))
    pipe = r.pipeline(transaction=False)
    for c in range(start, start + copies):
        tag = f"-{run}{c}".encode()
        for template in group:
            pipe.xadd(stream, {keys.EVENT_FIELD: template.render(tag)})
        if len(pipe) >= PIPELINE:
            ids += pipe.execute()
    if len(pipe):
        ids += pipe.execute()
    return ids


def route(stored: bytes) -> str:
    """The routing key ingest gave a stored event (its run id, else its session id, else its id)."""
    from services.ingest.watcher import routing_key  # ingest's own rule, so copies land alike

    event = orjson.loads(stored)
    metadata = event.get("metadata") or {}
    if event.get("source") == "llmonitor" and metadata.get("runId"):
        return str(metadata["runId"])
    return routing_key(metadata, str(event.get("id", "")))


def load_partitioned(r: Any, group: list[Template], count: int, partitions: int, *,
                     run: str = "x") -> dict[int, list[bytes]]:  # fmt: skip
    """`load` over `partitions` event streams, each copy in the stream ingest would have put it
    in (`r` may be a cluster client: its pipeline splits per node). Stream ids per partition."""
    copies = -(-count // len(group))
    ids: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    order: list[int] = []
    pipe = r.pipeline(transaction=False)
    for c in range(copies):
        tag = f"-{run}{c}".encode()
        for template in group:
            event = template.render(tag)
            partition = keys.partition_for(route(event), partitions)
            pipe.xadd(keys.events_stream(partition), {keys.EVENT_FIELD: event})
            order.append(partition)
        if len(order) >= PIPELINE or c == copies - 1:
            for partition, entry_id in zip(order, pipe.execute(), strict=True):
                ids[partition].append(entry_id)
            order = []
    return ids
