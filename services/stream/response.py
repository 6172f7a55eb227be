"""One SSE connection: the ASGI response that replays, hands over to live and writes frames.

The writer drains the subscriber's queue and writes everything waiting in one chunk, with a send
timeout. Three things end a stream: the client goes away (`http.disconnect`), the hub drops it
(queue full) or a write times out — then the socket is aborted, because closing it would wait
forever for a client that reads nothing to drain the buffer — or the process shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.stream import feeds, replay, sse
from services.stream.feeds import Entry, Feed
from services.stream.hub import Hub, Subscriber
from services.stream.metrics import StreamMetrics
from shared import cursor
from shared.cursor import StreamId
from shared.redis import UNAVAILABLE

log = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer this response
]


@dataclass(frozen=True)
class Plan:
    """What to send before the live feed: a replay after `resume` (per-stream progress), a
    `reset` (the cursor cannot be resumed), and/or a history snapshot of N events."""

    resume: list[StreamId] | None = None
    reset: str | None = None
    snapshot: int = 0


class _Gone(Exception):
    """The stream ends here (dropped, timed out or shutting down)."""


def _transport(receive: Receive) -> Any:
    # uvicorn's `receive` is a method of its request cycle, which holds the asyncio transport.
    # Aborting it is the only way to free a client that stopped reading; other servers: None.
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    """Cancel and wait, cancelling again while a task runs on. On Python 3.11, redis-py sends
    every command through `asyncio.wait_for`, which swallows a cancellation that lands as the
    send completes (CPython gh-86296): the writer would then carry on into its live loop and hold
    the stream, its task and its per-IP slot forever (tests/e2e/test_faults_sse.py)."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.05)
    await asyncio.gather(*tasks, return_exceptions=True)  # all done: marks exceptions retrieved


class SseResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        hub: Hub,
        metrics: StreamMetrics,
        sub: Subscriber,
        plan: Plan,
        *,
        ping_s: Callable[[], float],
        send_timeout_s: Callable[[], float],
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(status_code=200)
        self.hub, self.metrics, self.sub, self.plan = hub, metrics, sub, plan
        self.ping_s, self.send_timeout_s, self.on_close = ping_s, send_timeout_s, on_close
        self.after: list[StreamId] | None = None
        self._sent = metrics.events_sent.labels(sub.feed.value)
        self._ping = sse.PING if sub.feed is Feed.STREAM else sse.KEEPALIVE
        self._notice = (
            {False: sse.UNAVAILABLE, True: sse.AVAILABLE}
            if sub.feed is Feed.STREAM
            else {False: sse.UNAVAILABLE_COMMENT, True: sse.AVAILABLE_COMMENT}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_gauge = self.metrics.streams_open.labels(self.sub.feed.value)
        open_gauge.inc()
        transport = _transport(receive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            writer = asyncio.create_task(self._write(send))
            listener = asyncio.create_task(self._listen(receive))
            try:
                await asyncio.wait({writer, listener}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _cancel(writer, listener)
            exc = writer.exception() if writer.done() and not writer.cancelled() else None
            if isinstance(exc, UNAVAILABLE):
                log.warning("SSE stream ended: Redis unavailable (%s)", exc)
            elif exc is not None and not isinstance(exc, _Gone):
                log.error("SSE writer failed", exc_info=exc)
        finally:
            self.hub.unsubscribe(self.sub)
            open_gauge.dec()
            self.on_close()
        reason = self.sub.dropped
        if reason in ("slow", "timeout"):
            self.metrics.clients_dropped.labels(reason).inc()
            if transport is not None:
                transport.abort()
                await asyncio.sleep(0)  # let the server see the connection lost before we return
        elif listener.done() and not listener.cancelled():
            pass  # the client left
        else:
            # shutting down, or Redis failed mid-replay: end the response properly; the client
            # reconnects with its cursor
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _send(self, send: Send, chunk: bytes) -> None:
        try:
            async with asyncio.timeout(self.send_timeout_s()):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except TimeoutError:
            self.sub.drop("timeout")
            raise _Gone from None

    async def _write(self, send: Send) -> None:
        if self.plan.resume is None and not self._wants_snapshot:
            # Subscribed before the first byte: a client that has seen the connect ping misses
            # nothing published after it.
            start = self.hub.subscribe(self.sub)
            await self._send(send, self._ping)
            if self.plan.reset is not None:
                await self._reset(send, self.plan.reset, start)
        else:
            await self._send(send, self._ping)
            await self._prelude(send)
        await self._live(send)

    @property
    def _wants_snapshot(self) -> bool:
        return self.plan.snapshot > 0 and self.sub.feed is Feed.EVENTS

    async def _reset(self, send: Send, reason: str, start: cursor.Position | None) -> None:
        self.metrics.resets.labels(reason).inc()
        text = self.hub.cursor_text(start) if start is not None else None
        await self._send(send, feeds.reset_frame(reason, text))

    # --- before live ----------------------------------------------------------------------------
    async def _prelude(self, send: Send) -> None:
        reset = self.plan.reset
        if self.plan.resume is not None:
            try:
                await self._catch_up(send, list(self.plan.resume), check=True)
                return
            except replay.Expired:
                reset = "expired"
        if not self._wants_snapshot:
            await self._reset(send, reset or "expired", self.hub.subscribe(self.sub))
            return
        if reset is not None:
            await self._reset(send, reset, None)  # the snapshot's replay sets the ids
        await self._snapshot(send)

    async def _snapshot(self, send: Send) -> None:
        events, covered = await replay.snapshot(
            self.hub.redis, self.hub.partitions, self.plan.snapshot
        )
        if events:
            await self._send(send, b"".join(sse.frame(sse.json_data(raw)) for raw in events))
            self._sent.inc(len(events))
        start = self.hub.delivered
        assert start is not None
        after = covered + [
            cursor.covered(start, j) for j in range(len(covered), len(self.hub.streams))
        ]
        await self._catch_up(send, after, check=False)

    async def _catch_up(self, send: Send, after: list[StreamId], *, check: bool) -> None:
        """Replay from Redis until close to the hub's watermark, subscribe, replay the rest."""
        caps = replay.caps(self.hub.settings) if check else None
        while True:
            upto = self.hub.delivered
            assert upto is not None
            read = await self._replay(send, after, upto, caps)
            caps = None
            if read < replay.PAGE:
                break
        upto = self.hub.subscribe(self.sub)
        await self._replay(send, after, upto, None)
        self.after = after

    async def _replay(
        self, send: Send, after: list[StreamId], upto: cursor.Position, caps: list[int] | None
    ) -> int:
        read = 0
        async for entries, bound in replay.pages(
            self.hub.redis, self.hub.streams, after, upto, check=caps
        ):
            read += len(entries)
            chunk = [
                self._frame(e)
                for e in entries
                if feeds.wants(self.sub.feed, self.sub.names, e.name)
            ]
            if chunk:
                await self._send(send, b"".join(chunk))
                self._sent.inc(len(chunk))
            after[:] = cursor.advance(after, bound)
        return read

    def _frame(self, item: Entry) -> bytes:
        return feeds.frame_for(self.sub.feed, item, self.hub.cursor_text(item.pos))

    # --- live -----------------------------------------------------------------------------------
    async def _live(self, send: Send) -> None:
        sub, frames = self.sub, self.sub.frames
        after = self.after
        horizon = cursor.horizon(after) if after is not None else None
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_s()
        told = True  # the Redis state the client last heard of (a stream starts "available")
        while True:
            if sub.dropped is not None:
                raise _Gone(sub.dropped)
            if not frames:
                sub.wake.clear()
                wait = next_ping - loop.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await sub.wake.wait()
                if sub.dropped is not None:
                    raise _Gone(sub.dropped)
            parts: list[bytes] = []
            if self.hub.available is not told:
                told = self.hub.available
                parts.append(self._notice[told])
            if loop.time() >= next_ping:
                parts.append(self._ping)
                next_ping = loop.time() + self.ping_s()
            oldest_ms = 0
            count = 0
            while frames:
                pos, data = frames.popleft()
                if horizon is not None:
                    if pos > horizon:
                        horizon = after = None
                    elif after is not None and cursor.is_seen(after, pos):
                        continue  # this replica is behind the one the client came from
                if not oldest_ms:
                    oldest_ms = pos.ms
                parts.append(data)
                count += 1
            if parts:
                await self._send(send, b"".join(parts))
            if count:
                self._sent.inc(count)
                self.metrics.fanout_latency.observe(max(0.0, time.time() - oldest_ms / 1000))
