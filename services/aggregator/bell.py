"""Ringing the bell for committed batches (slot `{notify}`, apart from the partitions).

A commit writes its batch's notification occurrences into the partition's outbox, atomically
with the state. The bell task of the process then raises whatever the commits queued since its
last round, in one compare-and-set on the bell (shared/notify.py), and deletes them from the
outboxes. Raising is idempotent (each occurrence carries a dedup id the bell records with the
row change), so a crash anywhere between the commit and the delete only means that the next
maintenance pass (`drain_outbox`, any replica) raises them again, counted once.

One task for every lane of the process: commits never wait for the bell, and concurrent commits
do not contend on the bell's version counter. On a cluster, a shard that is down (the bell's or
a partition's) leaves the occurrences in their outboxes until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import orjson

from shared import keys, notify
from shared.notifications import Occurrence
from shared.redis import UNAVAILABLE, Client, run_commands
from shared.settings import Settings

log = logging.getLogger(__name__)

Rung = dict[int, list[Occurrence]]  # partition -> occurrences the bell has taken


async def ring(redis: Client, settings: Settings, occurrences: Rung) -> Rung:
    """Ring the bell; returns what it took (to delete from the outboxes). On failure the outbox
    keeps them for the next maintenance pass; the bell's dedup ids make that harmless."""
    everything = [o for items in occurrences.values() for o in items]
    if not everything:
        return {}
    try:
        await notify.raise_many(redis, settings, everything)
    except Exception as exc:  # noqa: BLE001 - the outbox keeps them; never fatal
        log.warning("aggregator: notifications deferred to the next maintenance pass: %s", exc)
        return {}
    return occurrences


async def clear_outbox(redis: Client, rung: Rung) -> None:
    """Delete what the bell took from the outboxes (a failure leaves them to be raised again,
    counted once)."""
    commands = [
        (lambda r, p=p, ids=[o.dedup_id for o in items]: r.hdel(keys.outbox_key(p), *ids))
        for p, items in rung.items()
        if items
    ]
    try:
        await run_commands(redis, commands)
    except UNAVAILABLE as exc:
        log.warning("aggregator: outbox not cleared (raised again later, counted once): %s", exc)


async def drain_outbox(redis: Client, settings: Settings, partition: int) -> None:
    """Raise what a crashed or failed step left in the partition's outbox."""
    stored = await redis.hgetall(keys.outbox_key(partition))
    if stored:
        items = [Occurrence(**orjson.loads(v)) for v in stored.values()]
        await clear_outbox(redis, await ring(redis, settings, {partition: items}))


class Bell:
    """The process's bell ringer: commits `put` occurrences, `run` raises them in rounds."""

    def __init__(self, redis: Client, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._queued: Rung = defaultdict(list)
        self._wake = asyncio.Event()

    def put(self, partition: int, occurrences: list[Occurrence]) -> None:
        if occurrences:
            self._queued[partition].extend(occurrences)
            self._wake.set()

    async def ring(self) -> None:
        """Raise everything queued so far."""
        queued, self._queued = self._queued, defaultdict(list)
        self._wake.clear()
        if queued:
            await clear_outbox(self.redis, await ring(self.redis, self.settings, queued))

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            waiter = asyncio.ensure_future(stopping.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait((waiter, woken), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            woken.cancel()
            await self.ring()
