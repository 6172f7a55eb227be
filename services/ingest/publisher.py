"""Group-commit publisher: concurrent requests share one pipeline round trip to Redis.

A request hands its entries (stream name, DashboardEvent JSON) to `publish()` and waits. One
flusher task takes everything queued, sends it as ONE non-transactional pipeline of XADDs and
resolves each request's future; requests arriving meanwhile form the next round trip. A
request's entries always travel together. `publish()` returns only after Redis acknowledged
every XADD of the request; an error or the publish timeout raises `Unavailable` (503).

XADD never trims: the aggregator trims only what its consumer group acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from services.ingest.deadline import Deadline
from services.ingest.metrics import IngestMetrics
from shared.errors import Unavailable
from shared.keys import EVENT_FIELD

log = logging.getLogger(__name__)

Entry = tuple[str, bytes]  # (events stream name, DashboardEvent JSON)

# A round trip carries at most this many XADDs (more only when one request alone is bigger),
# which bounds the pipeline's memory and the latency of the requests behind it.
MAX_ENTRIES_PER_ROUND_TRIP = 5000


@dataclass(slots=True)
class _Pending:
    entries: list[Entry]
    future: asyncio.Future[None]


class Publisher:
    def __init__(
        self,
        redis: Redis,
        *,
        timeout_s: float,
        retry_after_s: int = 1,
        metrics: IngestMetrics | None = None,
        max_entries: int = MAX_ENTRIES_PER_ROUND_TRIP,
    ) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._metrics = metrics
        self._max_entries = max_entries
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()

    async def publish(self, entries: list[Entry]) -> None:
        """Return once Redis acknowledged every entry; else raise Unavailable (never hang)."""
        if not entries:
            return
        started = time.perf_counter()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(entries, future))
        self._wake.set()
        try:
            # On timeout the future is cancelled: if it is still queued, the flusher drops it.
            with Deadline(self._timeout_s):
                await future
        except TimeoutError:
            raise Unavailable(
                f"event store did not acknowledge within {self._timeout_s * 1000:.0f} ms",
                retry_after=self._retry_after_s,
            ) from None
        except Exception as exc:  # noqa: BLE001 - any store failure is retryable for the client
            log.warning("publish failed: %r", exc)
            raise Unavailable(
                "event store unavailable, retry shortly", retry_after=self._retry_after_s
            ) from None
        if self._metrics is not None:
            self._metrics.publish_seconds.observe(time.perf_counter() - started)

    async def run(self, stopping: asyncio.Event) -> None:
        """The flusher: one round trip at a time, until `stopping` is set and the queue is empty."""
        stop_watch = asyncio.create_task(self._wake_on(stopping))
        try:
            while True:
                if not self._queue:
                    if stopping.is_set():
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self.flush_once()
        finally:
            stop_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_watch
            for pending in self._queue:  # only when cancelled mid-way: fail, do not strand
                if not pending.future.done():
                    pending.future.set_exception(ConnectionError("publisher stopped"))
            self._queue.clear()

    async def flush_once(self) -> int:
        """Send what is queued (up to the round-trip cap) in one pipeline. Returns XADDs sent."""
        batch = self._take()
        live = [p for p in batch if not p.future.done()]  # timed-out requests are dropped
        if not live:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for pending in live:
            for stream, payload in pending.entries:
                pipe.xadd(stream, {EVENT_FIELD: payload})
            count += len(pending.entries)
        if self._metrics is not None:
            self._metrics.pipeline_size.observe(count)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - connection lost, timeout, ...: fail this batch
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return count
        index = 0
        for pending in live:
            n = len(pending.entries)
            failure = next(
                (r for r in results[index : index + n] if isinstance(r, Exception)), None
            )
            index += n
            if pending.future.done():
                continue
            if failure is None:
                pending.future.set_result(None)
            else:  # e.g. OOM or READONLY: Redis refused the write
                pending.future.set_exception(failure)
        return count

    def _take(self) -> list[_Pending]:
        if not self._queue:
            return []
        taken = 0
        cut = 0
        for pending in self._queue:
            if cut and taken + len(pending.entries) > self._max_entries:
                break
            taken += len(pending.entries)
            cut += 1
        batch, self._queue = self._queue[:cut], self._queue[cut:]
        return batch

    async def _wake_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._wake.set()
