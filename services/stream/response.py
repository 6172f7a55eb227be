"""One SSE connection: the ASGI response that replays, hands over to live and writes frames.

The writer runs in the server's own task for the request. Idle, it waits on one future, woken
by the hub: for frames, a Redis notice, its ping (the hub's ticker) or its client's departure
(the ticker sees the socket closed; a server that gives no transport gets a listener task for
`http.disconnect` instead). So an idle client costs little more than the server's own share
(README, "Fan-out"). The writer takes everything queued and writes it in one chunk, with a
send timeout. Three things end a stream: the client goes away,
the hub drops it (queue full) or a write times out — then the socket is aborted, because closing
it would wait forever for a client that reads nothing to drain the buffer — or the process shuts
down.

Ids: replayed frames carry the client's running vector; live frames the hub's. A client that
has seen more than this hub on some stream (it comes from a replica that was further on, or from
a snapshot) is *ahead*: until the hub passes it there, live entries it already has are skipped
and its frames get the hub's vector raised to the client's on those streams, so an id never
moves a stream backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.stream import feeds, replay, sse
from services.stream.feeds import Feed, Frame
from services.stream.hub import cancel
from services.stream.subscriber import SLOW, Subscriber
from shared import cursor
from shared.cursor import StreamId
from shared.redis import UNAVAILABLE

if TYPE_CHECKING:
    from services.stream.routes import Gateway

log = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer this response
]
PING = {Feed.STREAM: sse.PING, Feed.EVENTS: sse.KEEPALIVE}
NOTICE = {
    Feed.STREAM: {False: sse.UNAVAILABLE, True: sse.AVAILABLE},
    Feed.EVENTS: {False: sse.UNAVAILABLE_COMMENT, True: sse.AVAILABLE_COMMENT},
}
PICK = {Feed.STREAM: attrgetter("named"), Feed.EVENTS: attrgetter("unnamed")}


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send before the live feed: a replay after `resume` (per-stream progress), a
    `reset` (the cursor cannot be resumed), and/or a history snapshot of N events."""

    resume: list[StreamId] | None = None
    reset: str | None = None
    snapshot: int = 0


class _Gone(Exception):
    """The stream ends here (dropped, timed out, left or shutting down)."""


def _transport(receive: Receive) -> Any:
    # uvicorn's `receive` is a method of its request cycle, which holds the asyncio transport.
    # Aborting it is the only way to free a client that stopped reading; other servers: None.
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None


class SseResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, gateway: Gateway, sub: Subscriber, plan: Plan) -> None:
        # Not Response.__init__: nothing is rendered, `__call__` sends the headers itself.
        self.status_code = 200
        self.background = None
        self.gateway, self.sub, self.plan = gateway, sub, plan

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return list(HEADERS)  # what FastAPI may add to it is not sent: `__call__` sends HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway, sub = self.gateway, self.sub
        open_gauge = gateway.metrics.streams_open.labels(sub.feed.value)
        open_gauge.inc()
        sub.transport = transport = _transport(receive)
        # The hub's ticker sees a closed transport; a server without one needs a listener task.
        listener = asyncio.create_task(self._listen(receive)) if transport is None else None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await self._write(send)
        except _Gone:
            pass
        except UNAVAILABLE as exc:
            log.warning("SSE stream ended: Redis unavailable (%s)", exc)
        except Exception:
            log.exception("SSE writer failed")
        finally:
            if listener is not None:
                await cancel(listener)
            gateway.hub.unsubscribe(sub)
            open_gauge.dec()
            gateway.limits.release(sub.ip)
        reason = sub.dropped
        if reason in SLOW:
            gateway.metrics.clients_dropped.labels(reason).inc()
            if transport is not None:  # aborted by drop()
                await asyncio.sleep(0)  # let the server see the connection lost before we return
        elif reason != "left":
            # shutting down, or Redis failed mid-replay: end the response properly; the client
            # reconnects with its cursor
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.sub.drop("left")

    async def _send(self, send: Send, chunk: bytes) -> None:
        sub, message = self.sub, {"type": "http.response.body", "body": chunk, "more_body": True}
        if sub.next_ping != math.inf and sub.transport is not None:
            # Live, with a transport: the hub's ticker enforces the send timeout (and aborts the
            # socket, which ends the write), so most writes, which do not wait, cost no timer.
            sub.sending = asyncio.get_running_loop().time()
            try:
                await send(message)
            finally:
                sub.sending = 0.0
        else:
            try:
                async with asyncio.timeout(self.gateway.settings.sse_send_timeout_s):
                    await send(message)
            except TimeoutError:
                sub.drop("timeout")
                raise _Gone from None
        if sub.gone():
            sub.drop("left")
        if sub.dropped is not None:
            raise _Gone(sub.dropped)

    def _sent(self, count: int) -> None:
        self.gateway.sent[self.sub.feed].inc(count)

    async def _write(self, send: Send) -> None:
        plan, hub = self.plan, self.gateway.hub
        ping = PING[self.sub.feed]
        if plan.resume is None and not self._wants_snapshot:
            # Subscribed before the first byte: a client that has seen the connect ping misses
            # nothing published after it.
            start = hub.subscribe(self.sub)
            await self._send(send, ping)
            if plan.reset is not None:
                await self._reset(send, plan.reset, start)
            await self._live(send, None)
            return
        await self._send(send, ping)
        await self._live(send, await self._prelude(send))

    @property
    def _wants_snapshot(self) -> bool:
        return self.plan.snapshot > 0 and self.sub.feed is Feed.EVENTS

    async def _reset(self, send: Send, reason: str, start: list[StreamId] | None) -> None:
        self.gateway.metrics.resets.labels(reason).inc()
        text = self.gateway.hub.cursor_text(start) if start is not None else None
        await self._send(send, feeds.reset_frame(reason, text))

    # --- before live ----------------------------------------------------------------------------
    async def _prelude(self, send: Send) -> dict[int, StreamId] | None:
        """Replay (or reset, or snapshot) and subscribe; the streams the client is ahead on."""
        reset = self.plan.reset
        if self.plan.resume is not None:
            try:
                return await self._catch_up(send, list(self.plan.resume), check=True)
            except replay.Expired:
                reset = "expired"
        if not self._wants_snapshot:
            await self._reset(send, reset or "expired", self.gateway.hub.subscribe(self.sub))
            return None
        if reset is not None:
            await self._reset(send, reset, None)  # the snapshot's replay sets the ids
        return await self._snapshot(send)

    async def _snapshot(self, send: Send) -> dict[int, StreamId] | None:
        hub = self.gateway.hub
        events, covered = await replay.snapshot(hub.redis, hub.partitions, self.plan.snapshot)
        if events:
            await self._send(send, b"".join(sse.frame(sse.json_data(raw)) for raw in events))
            self._sent(len(events))
        after = covered + hub.vector()[len(covered) :]  # notifications, system: from now on
        return await self._catch_up(send, after, check=False)

    async def _catch_up(
        self, send: Send, after: list[StreamId], *, check: bool
    ) -> dict[int, StreamId] | None:
        """Replay from Redis until close to the hub, subscribe, replay the rest."""
        hub = self.gateway.hub
        running = hub.encoder(after)
        caps = replay.caps(hub.settings) if check else None
        while await self._replay(send, running, hub.vector(), caps) >= replay.PAGE:
            caps = None
        upto = hub.subscribe(self.sub)
        await self._replay(send, running, upto, None)
        return cursor.ahead(running.vector, upto) or None

    async def _replay(
        self, send: Send, running: cursor.Encoder, upto: list[StreamId], caps: list[int] | None
    ) -> int:
        read = 0
        sub, hub = self.sub, self.gateway.hub
        async for entries in replay.pages(hub.redis, hub.streams, running.vector, upto, check=caps):
            read += len(entries)
            chunk = []
            for entry in entries:
                running.advance(entry.stream, entry.id)
                if feeds.wants(sub.feed, sub.names, entry.name):
                    chunk.append(feeds.frame_for(sub.feed, entry, running.text()))
            if chunk:
                await self._send(send, b"".join(chunk))
                self._sent(len(chunk))
        return read

    # --- live -----------------------------------------------------------------------------------
    async def _live(self, send: Send, ahead: dict[int, StreamId] | None) -> None:
        sub, hub, settings = self.sub, self.gateway.hub, self.gateway.settings
        pick, notice, ping = PICK[sub.feed], NOTICE[sub.feed], PING[sub.feed]
        loop = asyncio.get_running_loop()
        sub.next_ping = loop.time() + settings.sse_ping_s  # the hub's ticker wakes us then
        told = True  # the Redis state the client last heard of (a stream starts "available")
        while True:
            if sub.dropped is not None:
                raise _Gone(sub.dropped)
            if sub.frames is None and hub.available is told and loop.time() < sub.next_ping:
                waiter = sub.waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    sub.waiter = None
                continue
            frames = sub.take()
            parts: list[bytes] = []
            if hub.available is not told:
                told = hub.available
                parts.append(notice[told])
            if loop.time() >= sub.next_ping:
                parts.append(ping)
                sub.next_ping = loop.time() + settings.sse_ping_s
            data = (
                (self._past(frames, ahead) if ahead else list(map(pick, frames))) if frames else []
            )
            if parts or data:
                await self._send(send, b"".join(parts + data))
            if data:
                assert frames is not None
                self._sent(len(data))
                oldest_ms = frames[0].entry.id[0]
                self.gateway.metrics.fanout_latency.observe(
                    max(0.0, time.time() - oldest_ms / 1000)
                )

    def _past(self, frames: list[Frame], ahead: dict[int, StreamId]) -> list[bytes]:
        """Frames for a client ahead of this hub on some streams (emptied as the hub passes)."""
        pick, out = PICK[self.sub.feed], []
        for frame in frames:
            entry = frame.entry
            seen = ahead.get(entry.stream)
            if seen is not None and entry.id <= seen:
                continue  # it has this one already
            if ahead:
                hub_vector = cursor.decode(frame.cursor).vector
                for j in [j for j, sid in ahead.items() if hub_vector[j] >= sid]:
                    del ahead[j]
            if not ahead:
                out.append(pick(frame))
                continue
            text = self.gateway.hub.cursor_text(cursor.merged(hub_vector, ahead))
            out.append(feeds.frame_for(self.sub.feed, entry, text))
        return out
