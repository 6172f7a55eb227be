"""The notification bell in Redis (shared/notify.py): idempotent raise, read state, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from shared import keys, notify
from shared.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


async def ring(
    redis: Redis,
    settings: Settings,
    dedup: str,
    *,
    task: str = "ask",
    at: float | None = None,
    body: str = "boom",
) -> None:
    await notify.raise_notification(
        redis,
        settings,
        kind="run.failed",
        severity="error",
        task_name=task,
        end_reason="failed",
        title=f"{task} failed",
        body=body,
        run_id=f"run-{dedup}",
        occurred_at=at or time.time(),
        dedup_id=dedup,
    )


async def feed(redis: Redis) -> list[tuple[str, dict[str, Any]]]:
    entries = await redis.xrange(keys.NOTIFY_FEED)
    return [
        (f[keys.FEED_TYPE_FIELD].decode(), orjson.loads(f[keys.FEED_DATA_FIELD]))
        for _, f in entries
    ]


async def test_raise_is_idempotent_and_coalesces(redis: Redis, settings: Settings) -> None:
    await ring(redis, settings, "e1", body="first")
    await ring(redis, settings, "e1", body="first")  # a redelivery of the same cause
    await ring(redis, settings, "e2", body="second")
    rows, cursor = await notify.list_rows(redis, 50, None)
    assert cursor is None and len(rows) == 1
    row = rows[0]
    assert row["count"] == 2 and row["body"] == "second" and row["run_id"] == "run-e2"
    assert len(row["occurrences"]) == 2 and row["read_at"] is None
    assert len(row["id"]) == 26 and row["fingerprint"] == "f6e6a9a9c7497971"
    assert await notify.unread_count(redis) == 1
    assert [name for name, _ in await feed(redis)] == [
        "notification.created",
        "notifications.unread_count_changed",
        "notification.updated",
    ]


async def test_window_and_read_state(redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(notification_window_s=60)
    now = time.time()
    await ring(redis, settings, "a", at=now - 1000)
    await ring(redis, settings, "b", at=now)  # outside the window: a new row
    rows, _ = await notify.list_rows(redis, 50, None)
    assert [r["count"] for r in rows] == [1, 1] and rows[0]["id"] > rows[1]["id"]
    assert await notify.set_read(redis, settings, rows[0]["id"], True)
    assert await notify.unread_count(redis) == 1
    assert not await notify.set_read(redis, settings, "01ZZZZZZZZZZZZZZZZZZZZZZZZ", True)
    await ring(redis, settings, "c", at=now + 1)  # a repeat makes the read row unread again
    rows, _ = await notify.list_rows(redis, 50, None)
    assert rows[0]["count"] == 2 and rows[0]["read_at"] is None
    assert await notify.unread_count(redis) == 2
    assert await notify.read_all(redis, settings) == 2
    assert await notify.unread_count(redis) == 0
    assert await notify.set_read(redis, settings, rows[1]["id"], False)
    assert await notify.unread_count(redis) == 1
    names = [name for name, _ in await feed(redis)]
    assert names.count("notifications.unread_count_changed") == 6


async def test_cursor_pagination(redis: Redis, settings: Settings) -> None:
    for i in range(7):
        await ring(redis, settings, f"d{i}", task=f"task{i}")
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = await notify.list_rows(redis, 3, cursor)
        seen += [r["task_name"] for r in rows]
        if cursor is None:
            break
    assert seen == [f"task{i}" for i in reversed(range(7))]


async def test_retention_by_count(redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(notification_max=3)
    for i in range(5):
        await ring(redis, settings, f"r{i}", task=f"task{i}")
    rows, _ = await notify.list_rows(redis, 50, None)
    assert [r["task_name"] for r in rows] == ["task4", "task3", "task2"]
    assert await notify.unread_count(redis) == 3
    assert await redis.hlen(keys.NOTIFY_ROWS) == 3 and await redis.hlen(keys.NOTIFY_OPEN) == 3


async def test_retention_by_age(redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(notification_max_age_s=60)
    await ring(redis, settings, "old", task="old")
    (old_id,) = [r["id"] for r in (await notify.list_rows(redis, 5, None))[0]]
    await redis.zadd(keys.NOTIFY_AGE, {old_id: time.time() - 120})  # last touched 2 minutes ago
    await ring(redis, settings, "new", task="new")
    rows, _ = await notify.list_rows(redis, 50, None)
    assert [r["task_name"] for r in rows] == ["new"]
    assert await notify.unread_count(redis) == 1


async def test_concurrent_writers_keep_the_bell_consistent(
    redis: Redis, settings: Settings
) -> None:
    # Raises and mark-all-read racing on the version compare-and-set (Lua and WATCH/MULTI, all in
    # the `{notify}` slot, so on a cluster too): nothing lost, unread index and feed agree.
    await asyncio.gather(
        *(ring(redis, settings, f"c{i}", task=f"task{i % 5}") for i in range(30)),
        *(notify.read_all(redis, settings) for _ in range(5)),
    )
    rows, _ = await notify.list_rows(redis, 50, None)
    assert len(rows) == 5 and sum(r["count"] for r in rows) == 30
    unread = {i.decode() for i in await redis.smembers(keys.NOTIFY_UNREAD)}
    assert unread == {r["id"] for r in rows if r["read_at"] is None}
    *_, (_, last) = await feed(redis)
    assert last["unread_count"] == len(unread)
