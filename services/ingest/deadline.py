"""A cheap per-request timeout for the hot path.

`asyncio.timeout` costs several microseconds per use (a Timeout object, state checks, a timer
handle); at tens of thousands of requests a second that shows. `Deadline` keeps only the timer:
`loop.call_later` cancels the task, and leaving the block turns that cancellation into
`TimeoutError` — the same contract as `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    __slots__ = ("_seconds", "_task", "_handle", "expired")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self.expired and exc_type is asyncio.CancelledError and self._task is not None:
            self._task.uncancel()
            raise TimeoutError from exc
