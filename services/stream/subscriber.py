"""One SSE client as the hub sees it: what it wants, its bounded queue, how its writer wakes."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from services.stream.feeds import Feed, Frame

SLOW = ("slow", "timeout")  # drop reasons that abort the connection


class Subscriber:
    """One SSE client as the hub sees it: what it wants and its bounded queue of frames. The
    queue is a plain list made by the first push, which the writer takes whole; `waiter` is the
    future an idle writer sleeps on. The hub's ticker wakes it when `next_ping` (event-loop time)
    is due, drops it once its `transport` is closed (the client left) and when a write started at
    `sending` takes too long: no timer, Event, deque or listener task per client."""

    __slots__ = (
        "capacity", "dropped", "feed", "frames", "ip", "names", "next_ping", "sending",
        "transport", "waiter",
    )  # fmt: skip

    def __init__(self, feed: Feed, names: frozenset[bytes] | None, ip: str, capacity: int) -> None:
        self.feed = feed
        self.names = names
        self.ip = ip
        self.capacity = capacity
        self.transport: Any = None  # the asyncio transport (uvicorn), None when unknown
        self.frames: list[Frame] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.next_ping = math.inf
        self.sending = 0.0  # event-loop time a live write started; 0 while none is under way
        self.dropped: str | None = None

    def push(self, frame: Frame) -> bool:
        frames = self.frames
        if frames is None:
            self.frames = [frame]
        elif len(frames) >= self.capacity:
            return False
        else:
            frames.append(frame)
        if self.waiter is not None:
            self.wake()
        return True

    def take(self) -> list[Frame] | None:
        frames, self.frames = self.frames, None
        return frames

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def gone(self) -> bool:
        """Has the client's connection closed (it left, or was aborted)?"""
        return self.transport is not None and self.transport.is_closing()

    def drop(self, reason: str) -> None:
        """End this client's stream. A slow one (`slow`, `timeout`) has its socket aborted at
        once, which also frees a write stuck on it; it resumes with its cursor."""
        if self.dropped is None:
            self.dropped = reason
        if reason in SLOW and self.transport is not None:
            self.transport.abort()
        self.wake()
