"""The notification bell in Redis (slot `{notify}`): raise, list, mark read/unread.

Every write is optimistic: read, decide (the pure rules of `notifications.py`), write only if
`NOTIFY_VERSION` has not moved since the read (every writer bumps it), else read again. Raising
is two Lua calls (notify_scripts.py); marking read/unread and retention use WATCH on the version
with MULTI/EXEC. So several aggregator replicas, the metrics sampler and the REST routes can
change the bell at once. Raising is idempotent: each occurrence carries a `dedup_id` recorded in
the same atomic write as the row it changed, so a redelivered event that raises again is a
no-op. Dedup ids are kept `dedup_window_s`.

Each change is also appended to `keys.NOTIFY_FEED` (fields `t` = SSE event name, `d` = JSON):
`notification.created|notification.updated` `{notification, unread_count}` and
`notifications.unread_count_changed` `{unread_count}`.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import orjson
from redis.exceptions import WatchError
from ulid import ULID

from shared import keys, notify_scripts
from shared.notifications import Bell, Occurrence, Policy, Row, expired, fold
from shared.redis import Client
from shared.settings import Settings
from shared.times import rfc3339

MAX_ATTEMPTS = 100


def policy_from(settings: Settings) -> Policy:
    return Policy(
        window_s=settings.notification_window_s,
        occurrences=settings.notification_occurrences,
        max_rows=settings.notification_max,
        max_age_s=settings.notification_max_age_s,
    )


async def raise_notification(
    redis: Client,
    settings: Settings,
    *,
    kind: str,
    severity: str,
    task_name: str,
    end_reason: str,
    title: str,
    body: str,
    run_id: str | None,
    occurred_at: float,
    dedup_id: str,
) -> None:
    """Ring the bell once for `dedup_id` (a repeat call with the same id changes nothing)."""
    occ = Occurrence(
        kind, severity, task_name, end_reason, title, body, run_id, occurred_at, dedup_id
    )
    await raise_many(redis, settings, [occ])


async def raise_many(redis: Client, settings: Settings, occurrences: list[Occurrence]) -> int:
    """Apply a batch of occurrences in one compare-and-set; returns how many were new."""
    if not occurrences:
        return 0
    policy = policy_from(settings)
    fingerprints = list(dict.fromkeys(o.fingerprint for o in occurrences))
    dedup_ids = list(dict.fromkeys(o.dedup_id for o in occurrences))
    for attempt in range(MAX_ATTEMPTS):
        now = time.time()
        version, bell, total, aged = await _load(redis, settings, fingerprints, dedup_ids, now)
        fold(bell, occurrences, now=now, policy=policy, new_id=lambda: str(ULID()))
        if not bell.applied_now:
            return 0
        if await redis.eval(
            notify_scripts.COMMIT,
            len(_COMMIT_KEYS),
            *_COMMIT_KEYS,
            *_commit_args(bell, version, now, settings),
        ):
            created = sum(1 for name, _ in bell.feed if name == "notification.created")
            if aged or total + created > policy.max_rows:
                await prune(redis, settings)
            return len(bell.applied_now)
        await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise RuntimeError("notification bell: too much contention, giving up for now")


_LOAD_KEYS = (
    keys.NOTIFY_VERSION,
    keys.NOTIFY_OPEN,
    keys.NOTIFY_ROWS,
    keys.NOTIFY_UNREAD,
    keys.NOTIFY_APPLIED,
    keys.NOTIFY_IDS,
    keys.NOTIFY_AGE,
)
_COMMIT_KEYS = (
    keys.NOTIFY_VERSION,
    keys.NOTIFY_ROWS,
    keys.NOTIFY_OPEN,
    keys.NOTIFY_IDS,
    keys.NOTIFY_AGE,
    keys.NOTIFY_UNREAD,
    keys.NOTIFY_APPLIED,
    keys.NOTIFY_FEED,
)


async def _load(
    redis: Client, settings: Settings, fingerprints: list[str], dedup_ids: list[str], now: float
) -> tuple[bytes, Bell, int, bool]:
    """(version, the bell as the fold needs it, rows stored, whether some row aged out)."""
    cutoff = now - settings.notification_max_age_s
    reply = await redis.eval(
        notify_scripts.LOAD,
        len(_LOAD_KEYS),
        *_LOAD_KEYS,
        len(fingerprints),
        *fingerprints,
        *dedup_ids,
        cutoff,
    )
    version, unread, flags, total, aged, rows = (
        reply[0],
        int(reply[1]),
        reply[2],
        reply[3],
        reply[4],
        reply[5:],
    )
    applied = {d for d, flag in zip(dedup_ids, flags, strict=True) if flag == ord("1")}
    open_rows = {}
    for raw in rows:
        if raw:
            row = orjson.loads(raw)
            open_rows[row["fingerprint"]] = row
    return (
        version,
        Bell(open_rows=open_rows, unread=unread, applied=applied),
        int(total),
        bool(aged),
    )


def _commit_args(bell: Bell, version: bytes, now: float, settings: Settings) -> list[Any]:
    args: list[Any] = [
        version,
        now,
        now - settings.dedup_window_s,
        settings.feed_max,
        keys.FEED_TYPE_FIELD,
        keys.FEED_DATA_FIELD,
        len(bell.writes),
    ]
    for row_id, row in bell.writes.items():
        args += (row_id, row["fingerprint"], orjson.dumps(row))
    args += [len(bell.newly_unread), *bell.newly_unread, len(bell.applied_now), *bell.applied_now]
    args.append(len(bell.feed))
    for name, payload in bell.feed:
        args += (name, orjson.dumps(payload))
    return args


def _publish(pipe: Any, feed: list[tuple[str, dict[str, Any]]], settings: Settings) -> None:
    for name, payload in feed:
        pipe.xadd(
            keys.NOTIFY_FEED,
            {keys.FEED_TYPE_FIELD: name, keys.FEED_DATA_FIELD: orjson.dumps(payload)},
            maxlen=settings.feed_max,
            approximate=True,
        )


async def prune(redis: Client, settings: Settings) -> int:
    """Retention: keep `notification_max` rows and none idle longer than `notification_max_age_s`."""
    policy = policy_from(settings)
    for _ in range(MAX_ATTEMPTS):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.NOTIFY_VERSION)
                total = int(await redis.zcard(keys.NOTIFY_IDS))
                over = max(0, total - policy.max_rows)
                oldest = await redis.zrange(keys.NOTIFY_IDS, 0, over - 1) if over else []
                aged = await redis.zrangebyscore(
                    keys.NOTIFY_AGE, "-inf", time.time() - policy.max_age_s, start=0, num=1000
                )
                drop = expired(
                    [i.decode() for i in oldest], total, [i.decode() for i in aged], policy
                )
                if not drop:
                    return 0
                rows = await redis.hmget(keys.NOTIFY_ROWS, drop)
                unread_before = int(await redis.scard(keys.NOTIFY_UNREAD))
                unread_flags = await redis.smismember(keys.NOTIFY_UNREAD, drop)
                fps = [orjson.loads(r)["fingerprint"] for r in rows if r is not None]
                open_ids = await redis.hmget(keys.NOTIFY_OPEN, fps) if fps else []
                pipe.multi()
                pipe.hdel(keys.NOTIFY_ROWS, *drop)
                pipe.zrem(keys.NOTIFY_IDS, *drop)
                pipe.zrem(keys.NOTIFY_AGE, *drop)
                pipe.srem(keys.NOTIFY_UNREAD, *drop)
                stale = [
                    fp for fp, i in zip(fps, open_ids, strict=True) if i and i.decode() in drop
                ]
                if stale:
                    pipe.hdel(keys.NOTIFY_OPEN, *stale)
                removed_unread = sum(1 for f in unread_flags if f)
                if removed_unread:
                    payload = {"unread_count": unread_before - removed_unread}
                    _publish(pipe, [("notifications.unread_count_changed", payload)], settings)
                pipe.incr(keys.NOTIFY_VERSION)
                await pipe.execute()
                return len(drop)
            except WatchError:
                continue
    return 0


# --- read side (used by the stream gateway's REST routes) -----------------------------------
async def list_rows(redis: Client, limit: int, before: str | None) -> tuple[list[Row], str | None]:
    """Newest first (by id), `before` an id cursor (exclusive). Returns (rows, next cursor)."""
    upper = f"({before}" if before else "+"
    ids = await redis.zrange(
        keys.NOTIFY_IDS, upper, "-", desc=True, bylex=True, offset=0, num=limit + 1
    )
    page = [i.decode() for i in ids[:limit]]
    rows = [orjson.loads(r) for r in await redis.hmget(keys.NOTIFY_ROWS, page) if r] if page else []
    return rows, (page[-1] if len(ids) > limit and page else None)


async def unread_count(redis: Client) -> int:
    return int(await redis.scard(keys.NOTIFY_UNREAD))


async def set_read(redis: Client, settings: Settings, row_id: str, read: bool) -> bool:
    """Mark one row read (read_at = now) or unread. False when the id is unknown."""
    for _ in range(MAX_ATTEMPTS):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.NOTIFY_VERSION)
                raw = await redis.hget(keys.NOTIFY_ROWS, row_id)
                if raw is None:
                    return False
                row = orjson.loads(raw)
                unread = int(await redis.scard(keys.NOTIFY_UNREAD))
                was_unread = bool(await redis.sismember(keys.NOTIFY_UNREAD, row_id))
                row["read_at"] = rfc3339(time.time()) if read else None
                pipe.multi()
                pipe.hset(keys.NOTIFY_ROWS, row_id, orjson.dumps(row))
                feed: list[tuple[str, dict[str, Any]]] = []
                if read and was_unread:
                    pipe.srem(keys.NOTIFY_UNREAD, row_id)
                    unread -= 1
                elif not read and not was_unread:
                    pipe.sadd(keys.NOTIFY_UNREAD, row_id)
                    unread += 1
                feed.append(("notification.updated", {"notification": row, "unread_count": unread}))
                if was_unread == read:  # the count moved
                    feed.append(("notifications.unread_count_changed", {"unread_count": unread}))
                _publish(pipe, feed, settings)
                pipe.incr(keys.NOTIFY_VERSION)
                await pipe.execute()
                return True
            except WatchError:
                continue
    raise RuntimeError("notification bell: too much contention, giving up for now")


async def read_all(redis: Client, settings: Settings) -> int:
    """Mark every unread row read. Returns how many changed."""
    for _ in range(MAX_ATTEMPTS):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.NOTIFY_VERSION)
                ids = [i.decode() for i in await redis.smembers(keys.NOTIFY_UNREAD)]
                if not ids:
                    return 0
                stamp = rfc3339(time.time())
                rows = {}
                for row_id, raw in zip(ids, await redis.hmget(keys.NOTIFY_ROWS, ids), strict=True):
                    if raw is not None:
                        row = orjson.loads(raw)
                        row["read_at"] = stamp
                        rows[row_id] = row
                pipe.multi()
                if rows:
                    pipe.hset(
                        keys.NOTIFY_ROWS, mapping={i: orjson.dumps(r) for i, r in rows.items()}
                    )
                pipe.delete(keys.NOTIFY_UNREAD)
                feed: list[tuple[str, dict[str, Any]]] = [
                    ("notification.updated", {"notification": r, "unread_count": 0})
                    for r in rows.values()
                ]
                feed.append(("notifications.unread_count_changed", {"unread_count": 0}))
                _publish(pipe, feed, settings)
                pipe.incr(keys.NOTIFY_VERSION)
                await pipe.execute()
                return len(ids)
            except WatchError:
                continue
    raise RuntimeError("notification bell: too much contention, giving up for now")
