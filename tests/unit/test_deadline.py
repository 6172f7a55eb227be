"""The watchdog: one timer for many deadlines, running only while something is armed."""

import asyncio
import time

import pytest

from services.ingest.deadline import TaskTimer, Watchdog

pytestmark = pytest.mark.unit


class Item:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = 0

    def expire(self) -> None:
        self.expired += 1


async def test_expires_what_is_overdue_once_and_stops_ticking() -> None:
    watchdog = Watchdog(resolution_s=0.01)
    now = time.monotonic()
    soon, later, disarmed = Item(now + 0.02), Item(now + 60), Item(now + 0.02)
    for item in (soon, later, disarmed):
        watchdog.arm(item)
    watchdog.disarm(disarmed)
    while not soon.expired:
        await asyncio.sleep(0.01)
    assert (soon.expired, later.expired, disarmed.expired) == (1, 0, 0)
    assert len(watchdog) == 1
    watchdog.disarm(later)
    await asyncio.sleep(0.03)
    assert watchdog._timer is None  # nothing armed: no timer left running


async def test_a_task_timer_cancels_its_task_and_says_why() -> None:
    watchdog = Watchdog(resolution_s=0.01)

    async def stuck() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    timer = TaskTimer(task, time.monotonic() + 0.02)
    watchdog.arm(timer)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timer.expired
