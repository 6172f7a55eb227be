"""Group-commit publisher: concurrent requests share one round trip to each Redis master.

A request hands its entries (stream name, DashboardEvent JSON) to `publish()` and waits. Each
master has a lane (`lanes.py`; a single Redis is one lane) with one flusher task: it takes
everything queued for its master, sends it as one packed write of XADDs (`resp.py`) on one
connection, reads the replies and resolves each request; requests arriving meanwhile form the
next round trip. A request's entries for one master always travel together and in order.
`publish()` returns only after Redis acknowledged every XADD of the request; an error, or no
answer within the publish timeout, raises `Unavailable` (503 + Retry-After).

On a cluster, a request whose events all go to healthy masters is answered as usual while
another master is down; one with an event for a dead master gets 503. A request spanning
several masters is refused whole, before anything is sent, while one of them failed in the
last second, so a dead master rarely leaves half a request published (see README, "What a 503
means": a retry with the same event ids is counted once).

With `replica_acks` > 0 every round trip ends with `WAIT <n> <ms>` on the same connection (WAIT
counts the replicas that have every write of that connection), and its requests are answered
only once n replicas have their XADDs: an acknowledged event then survives its master's death.

XADD never trims: the aggregator trims only what its consumer group acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    TryAgainError,
)

from services.ingest import resp
from services.ingest.deadline import Watchdog
from services.ingest.lanes import Lane, Router, read_replies
from services.ingest.metrics import IngestMetrics
from shared.errors import Unavailable
from shared.keys import EVENT_FIELD
from shared.redis import Client

Entry = tuple[str, bytes]  # (events stream name, DashboardEvent JSON)

# A round trip carries at most this many XADDs (more only when one request alone is bigger),
# which bounds the write's memory and the latency of the requests behind it.
MAX_ENTRIES_PER_ROUND_TRIP = 5000
# After a failed round trip, requests that span this master and others are refused at once
# for this long (nothing of them is sent), instead of publishing their other parts.
DOWN_HOLD_S = 1.0
# Replies that mean "this master no longer (or not yet) serves that slot": read the topology.
_REROUTE = (MovedError, AskError, ClusterDownError, TryAgainError, MasterDownError)
# WAIT's own timeout leaves this share of the time left to the request's deadline, so that "not
# enough replicas" is answered as such (and in time) rather than as a timeout.
WAIT_MARGIN = 0.2


class NotReplicated(Exception):
    """WAIT answered fewer replicas than required before its timeout."""


class _Request:
    __slots__ = ("deadline", "future", "pending")

    def __init__(self, future: asyncio.Future[None], deadline: float, pending: int) -> None:
        self.future = future
        self.deadline = deadline
        self.pending = pending  # parts (masters) not yet acknowledged

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(TimeoutError())


class _Part:
    """A request's entries for one master, packed."""

    __slots__ = ("commands", "count", "request")

    def __init__(self, request: _Request, commands: list[bytes]) -> None:
        self.request = request
        self.commands = commands
        self.count = len(commands)


def _resolution(timeout_s: float) -> float:
    return min(0.05, max(0.005, timeout_s / 4))


class Publisher:
    def __init__(
        self,
        redis: Client,
        *,
        timeout_s: float,
        retry_after_s: int = 1,
        metrics: IngestMetrics | None = None,
        max_entries: int = MAX_ENTRIES_PER_ROUND_TRIP,
        replica_acks: int = 0,
        watchdog: Watchdog | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._metrics = metrics
        self._max_entries = max_entries
        self._acks = replica_acks
        self._watchdog = watchdog or Watchdog(_resolution(timeout_s))
        self._heads: dict[str, bytes] = {}
        self._router = Router(redis, self._adopt)
        self._running = False
        self._stopping = False

    async def publish(self, entries: list[Entry]) -> None:
        """Return once Redis acknowledged every entry; else raise Unavailable (never hang)."""
        if not entries:
            return
        started = time.monotonic()
        request = _Request(asyncio.get_running_loop().create_future(), started + self._timeout_s, 1)
        lane = self._router.single
        if lane is not None:
            lane.queue.append(_Part(request, resp.pack_xadds(self._heads, EVENT_FIELD, entries)))
            lane.wake.set()
        else:
            await self._spread(request, entries, started)
        self._watchdog.arm(request)
        try:
            await request.future
        except TimeoutError:
            raise self._unavailable(
                f"event store did not acknowledge within {self._timeout_s * 1000:.0f} ms"
            ) from None
        except NotReplicated as exc:
            raise self._unavailable(str(exc)) from None
        except Exception:  # noqa: BLE001 - any store failure is retryable for the client
            raise self._unavailable("event store unavailable, retry shortly") from None
        finally:
            self._watchdog.disarm(request)
        if self._metrics is not None:
            self._metrics.publish_seconds.observe(time.monotonic() - started)

    async def _spread(self, request: _Request, entries: list[Entry], now: float) -> None:
        """Cluster: queue the request's entries on the lanes of their masters."""
        router = self._router
        try:
            try:
                lanes = [router.route(stream) for stream, _ in entries]
            except Exception:  # noqa: BLE001 - slot table not read yet (first use, or lost)
                await router.ensure_topology()
                lanes = [router.route(stream) for stream, _ in entries]
        except Exception:  # noqa: BLE001 - no master answers: retryable
            router.refresh_soon()
            raise self._unavailable("event store unavailable, retry shortly") from None
        first = lanes[0]
        if all(lane is first for lane in lanes):
            groups = {first: entries}
        else:
            groups = {}
            for lane, entry in zip(lanes, entries, strict=True):
                groups.setdefault(lane, []).append(entry)
            if any(lane.is_down(now) for lane in groups):  # refused whole, not split
                raise self._unavailable(
                    "an event store shard of this request is unavailable; nothing was published"
                )
        request.pending = len(groups)
        for lane, group in groups.items():
            lane.queue.append(_Part(request, resp.pack_xadds(self._heads, EVENT_FIELD, group)))
            lane.wake.set()

    @property
    def queued(self) -> int:
        """Entries waiting for a round trip (every lane)."""
        return sum(part.count for lane in self._router.lanes for part in lane.queue)

    def _unavailable(self, detail: str) -> Unavailable:
        return Unavailable(detail, retry_after=self._retry_after_s)

    # --- flushing --------------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        """The flushers (one per lane), until `stopping` is set and every queue is empty."""
        self._running = True
        for lane in self._router.lanes:
            self._adopt(lane)
        try:
            await stopping.wait()
            self._stopping = True
            while busy := [lane.task for lane in self._router.lanes if lane.task is not None]:
                for lane in self._router.lanes:
                    lane.wake.set()
                await asyncio.wait(busy)
                for lane in self._router.lanes:
                    if lane.task is not None and lane.task.done():
                        lane.task = None
        finally:
            self._running = False
            for lane in self._router.lanes:  # only when cancelled mid-way: fail, do not strand
                if lane.task is not None:
                    lane.task.cancel()
                    await asyncio.gather(lane.task, return_exceptions=True)
                    lane.task = None
                while lane.queue:
                    self._fail([lane.queue.popleft()], ConnectionError("publisher stopped"))
            await self._router.close()

    def _adopt(self, lane: Lane) -> None:
        if self._running and lane.task is None:
            lane.task = asyncio.create_task(self._serve(lane), name=f"ingest:publish:{lane.name}")

    async def _serve(self, lane: Lane) -> None:
        while True:
            if not lane.queue:
                if self._stopping:
                    return
                lane.wake.clear()
                await lane.wake.wait()
                continue
            await self.round_trip(lane)

    async def flush_once(self) -> int:
        """Send what is queued (up to the round-trip cap per master), one round trip per master
        at once. Returns the XADDs sent. For tests and tools: `run()` does this continuously."""
        if self._running:
            raise RuntimeError("flush_once() while run() flushes")
        lanes = [lane for lane in self._router.lanes if lane.queue]
        return sum(await asyncio.gather(*(self.round_trip(lane) for lane in lanes)))

    def _take(self, lane: Lane) -> tuple[list[_Part], int]:
        queue = lane.queue
        parts: list[_Part] = []
        count = 0
        while queue:
            part = queue[0]
            if part.request.future.done():  # timed out while queued: never sent
                queue.popleft()
                continue
            if parts and count + part.count > self._max_entries:
                break
            queue.popleft()
            parts.append(part)
            count += part.count
        return parts, count

    async def round_trip(self, lane: Lane) -> int:
        """One packed write of the lane's queued XADDs (and WAIT), its replies, the answers."""
        parts, count = self._take(lane)
        if not parts:
            return 0
        commands = (
            [c for part in parts for c in part.commands] if len(parts) > 1 else parts[0].commands
        )
        acks = self._acks
        if acks:  # WAIT must answer before the first of these requests times out
            left = min(part.request.deadline for part in parts) - time.monotonic()
            wait_s = left * (1 - WAIT_MARGIN)
            commands = [*commands, resp.wait(acks, int(wait_s * 1000))]
        if self._metrics is not None:
            self._metrics.pipeline_size.observe(count)
        link = lane.link
        replies: list[Any] = []
        conn = None
        try:
            async with asyncio.timeout(self._timeout_s):
                conn = await link.acquire()
                await conn.send_packed_command(commands, check_health=False)
                replies = await read_replies(conn, len(commands))
        except BaseException as exc:
            if conn is not None:  # unread replies may be on the way: never reuse it as is
                await conn.disconnect(nowait=True)
                await link.release(conn)
            stopped = isinstance(exc, asyncio.CancelledError)
            self._fail(parts, ConnectionError("publisher stopped") if stopped else exc)
            if stopped:
                raise
            lane.failed(exc, DOWN_HOLD_S)
            self._router.refresh_soon()
            return count
        await link.release(conn)
        lane.succeeded()
        if acks:
            acked = replies.pop()
            if isinstance(acked, Exception) or int(acked) < acks:
                self._fail(parts, NotReplicated(
                    f"events not confirmed by {acks} replica(s) within the publish timeout"
                ))  # fmt: skip
                # A master without its replicas may be one that a failover replaced (and that
                # came back still believing it owns the slots): read the topology again.
                self._router.refresh_soon()
                return count
        self._answer(parts, replies)
        return count

    def _answer(self, parts: list[_Part], replies: list[Any]) -> None:
        failed = [i for i, reply in enumerate(replies) if isinstance(reply, Exception)]
        if not failed:
            for part in parts:
                request = part.request
                request.pending -= 1
                if request.pending == 0 and not request.future.done():
                    request.future.set_result(None)
            return
        if any(isinstance(replies[i], _REROUTE) for i in failed):
            self._router.refresh_soon()
        start = 0
        for part in parts:
            end = start + part.count
            error = next((replies[i] for i in failed if start <= i < end), None)
            start = end
            request = part.request
            if request.future.done():
                continue
            if error is not None:  # e.g. OOM, or MOVED: Redis refused it
                request.future.set_exception(error)
            else:
                request.pending -= 1
                if request.pending == 0:
                    request.future.set_result(None)

    @staticmethod
    def _fail(parts: list[_Part], exc: BaseException) -> None:
        for part in parts:
            if not part.request.future.done():
                part.request.future.set_exception(exc)
