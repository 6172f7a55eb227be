"""One coarse timer for every deadline of the hot path.

A timer per request (`asyncio.timeout`, even a bare `loop.call_later`) costs microseconds that
show at tens of thousands of requests a second, and nearly every request finishes long before
its deadline. So each process keeps one `Watchdog`: a request arms it with an object that has a
`deadline` (monotonic seconds) and an `expire()` method, disarms it when done, and a single
timer, running only while something is armed, expires what is overdue every `resolution_s`.
A deadline is therefore honoured up to one resolution late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Expiring(Protocol):
    deadline: float

    def expire(self) -> None: ...


class Watchdog:
    __slots__ = ("_armed", "_timer", "resolution_s")

    def __init__(self, resolution_s: float = 0.05) -> None:
        self.resolution_s = resolution_s
        self._armed: dict[int, Expiring] = {}
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, item: Expiring) -> None:
        self._armed[id(item)] = item
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.resolution_s, self._tick)

    def disarm(self, item: Expiring) -> None:
        self._armed.pop(id(item), None)

    def __len__(self) -> int:
        return len(self._armed)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        due = [key for key, item in self._armed.items() if item.deadline <= now]
        for key in due:
            item = self._armed.pop(key)
            try:
                item.expire()
            except Exception:  # one item's failure must not strand the others
                log.exception("expiring %r failed", item)
        if self._armed:
            self._timer = asyncio.get_running_loop().call_later(self.resolution_s, self._tick)


class TaskTimer:
    """Cancels a task at its deadline (for awaits that cannot be given a deadline otherwise,
    such as reading a request body); `expired` tells the task why it was cancelled."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.deadline = deadline
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()
