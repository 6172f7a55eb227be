"""Sustained ingest load for the fault tests, and a ledger of what ingest acknowledged.

Each request carries fixed event ids (webhook `id`s; LLMonitor ids are derived from runId, event
and timestamp), so a client that retries a request after an error re-sends the same events, and
the aggregator counts them once. A worker retries each request until it gets its 200 — only then
are its events *acknowledged* — and sends the next request only after that, so one worker's
acknowledged events arrived in exactly that order.

After the load, `expect_exactly` compares what the read APIs show with the ledger: totals, the
history (every id once, each worker's events in acknowledgement order), and the runs.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from services.ingest.llmonitor import event_id
from shared import keys
from shared.keys import partition_for

APP = "fault-app"  # register with LLMWATCH_APPS
RETRYABLE = frozenset({502, 503, 504})  # and transport errors (status None)
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Attempt:
    status: int | None  # None: connection refused/reset, timeout
    seconds: float
    retry_after: str | None
    at: float  # time.monotonic() when the answer came


@dataclass
class Request:
    path: str
    body: bytes
    ids: list[str]  # event ids, in body order
    routes: list[str]  # each event's routing key (run or session id): it picks the partition
    source: str
    runs: dict[str, int]  # run id -> events of that run in this request


@dataclass
class Ledger:
    acked: list[str] = field(default_factory=list)
    by_worker: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # (id, route)
    by_source: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)  # run id -> acknowledged events
    parents: dict[str, str] = field(default_factory=dict)  # child run id -> parent run id
    attempts: list[Attempt] = field(default_factory=list)

    def ack(self, worker: int, request: Request) -> None:
        self.acked += request.ids
        self.by_worker.setdefault(worker, []).extend(zip(request.ids, request.routes, strict=True))
        self.by_source[request.source] += len(request.ids)
        self.runs.update(request.runs)

    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.attempts)


def _ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def webhook_session(rng: random.Random) -> Request:
    """A watcher session as one batch: start, streaming, completed (one run of 3 events)."""
    session = f"s-{uuid.UUID(int=rng.getrandbits(128))}"
    command = f"cmd{rng.randrange(4)}"
    events = []
    for event_type, status, meta in (
        ("request", "start", {"prompt": "hi"}),
        ("streaming", "running", {"tokens_so_far": 3}),
        ("completion", "completed", {"tokens": rng.randrange(1, 50), "duration_ms": 120}),
    ):
        events.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128))), "event_type": event_type,
            "command": command, "status": status, "model": "gpt-4o", "session_id": session,
            "metadata": meta,
        })  # fmt: skip
    body = orjson.dumps({"batch": True, "events": events})
    ids = [e["id"] for e in events]
    return Request("/api/open-wrapper", body, ids, [session] * 3, "webhook", {session: 3})


def llmonitor_tree(rng: random.Random) -> Request:
    """A chain run with one llm child: start, start, end, end (two runs of 2 events)."""
    parent = f"r-{uuid.UUID(int=rng.getrandbits(128))}"
    child = f"c-{uuid.UUID(int=rng.getrandbits(128))}"
    t0 = datetime.now(UTC)
    rows = [
        ("chain", parent, None, "start", 0, {"name": "agent", "input": "plan"}),
        ("llm", child, parent, "start", 1, {"name": "gpt-4o", "input": "hello"}),
        ("llm", child, parent, "end", 2,
         {"output": "hi", "tokensUsage": {"prompt": 3, "completion": 4}}),
        ("chain", parent, None, "end", 3, {"output": "done"}),
    ]  # fmt: skip
    events, ids, routes = [], [], []
    for type_, run, parent_id, kind, offset, extra in rows:
        ts = _ts(t0 + timedelta(milliseconds=offset))
        event = {"type": type_, "event": kind, "app": APP, "runId": run, "timestamp": ts, **extra}
        if parent_id:
            event["parentRunId"] = parent_id
        events.append(event)
        ids.append(event_id(run, kind, ts))
        routes.append(run)
    body = orjson.dumps({"events": events})
    return Request("/v1/runs/ingest", body, ids, routes, "llmonitor", {parent: 2, child: 2})


def mixed(rng: random.Random) -> Request:
    return webhook_session(rng) if rng.random() < 0.5 else llmonitor_tree(rng)


async def deliver(
    client: httpx.AsyncClient,
    pick: Callable[[], str],
    request: Request,
    ledger: Ledger,
    *,
    give_up_s: float = 60.0,
) -> None:
    """POST until 200. Retryable answers (503, 502, 504, connection errors) are retried with the
    same body; anything else fails the test at once."""
    deadline = time.monotonic() + give_up_s
    while True:
        started = time.monotonic()
        status: int | None
        try:
            response = await client.post(pick() + request.path, content=request.body, headers=JSON)
            status, retry_after = response.status_code, response.headers.get("retry-after")
        except httpx.TransportError:
            status, retry_after, response = None, None, None
        now = time.monotonic()
        ledger.attempts.append(Attempt(status, now - started, retry_after, now))
        if status == 200:
            return
        if status is not None and status not in RETRYABLE:
            assert response is not None
            raise AssertionError(f"{request.path} answered {status}: {response.text[:500]}")
        if now > deadline:
            raise TimeoutError(f"{request.path} not acknowledged in {give_up_s}s")
        # Retry-After is whole seconds; the tests retry sooner to keep the outage window busy.
        await asyncio.sleep(0.05)


async def load(
    client: httpx.AsyncClient,
    pick: Callable[[], str],
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    workers: int = 4,
    max_requests: int = 2000,
    seed: int = 0,
    make: Callable[[random.Random], Request] = mixed,
) -> None:
    """`workers` sequential clients until `stop` is set (or each sent `max_requests`)."""

    async def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        for _ in range(max_requests):
            if stop.is_set():
                return
            request = make(rng)
            await deliver(client, pick, request, ledger)
            ledger.ack(n, request)
            if request.source == "llmonitor":
                parent, child = list(request.runs)
                ledger.parents[child] = parent

    await asyncio.gather(*(worker(n) for n in range(workers)))


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    """Cancel and wait, again while a task runs on: on Python 3.11 a redis-py call can swallow a
    cancellation (asyncio.wait_for, CPython gh-86296), and a loop around it would never end."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.05)
    await asyncio.gather(*tasks, return_exceptions=True)


# --- reading back ---------------------------------------------------------------------------------
async def until(predicate: Callable[[], Any], timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def aggregator_idle(redis: Redis, partitions: int) -> bool:
    """Every event read, applied and acknowledged, and no notification left in an outbox."""
    for p in range(partitions):
        stream = keys.events_stream(p)
        groups = await redis.xinfo_groups(stream)
        group = next((g for g in groups if g["name"] == keys.AGGREGATOR_GROUP.encode()), None)
        if group is None or int(group["pending"]) or await redis.hlen(keys.outbox_key(p)):
            return False
        newest = await redis.xrevrange(stream, count=1)
        if newest and newest[0][0] != group["last-delivered-id"]:
            return False
    return True


async def drained(redis: Redis, partitions: int, aggregator: Any, timeout: float = 60) -> None:
    """Wait until the aggregator is idle; on timeout, say where it stands."""
    try:
        await until(lambda: aggregator_idle(redis, partitions), timeout)
    except AssertionError:
        state = []
        for p in range(partitions):
            stream = keys.events_stream(p)
            state.append(
                f"p{p}: groups {await redis.xinfo_groups(stream)}, "
                f"outbox {await redis.hlen(keys.outbox_key(p))}, "
                f"newest {await redis.xrevrange(stream, count=1)}"
            )
        raise AssertionError(
            "aggregator not idle:\n" + "\n".join(state) + "\n" + aggregator.log_tail(40)
        ) from None


async def history_ids(client: httpx.AsyncClient, base: str) -> list[str]:
    """Every id in /api/history, oldest first (the API pages newest first)."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 5000}
        if cursor:
            params["before"] = cursor
        page = (await client.get(base + "/api/history", params=params)).raise_for_status().json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor or not page["items"]:
            return ids[::-1]


async def expect_exactly(
    client: httpx.AsyncClient,
    base: str,
    ledger: Ledger,
    partitions: int,
    *,
    sample_runs: int = 40,
) -> None:
    """The read side shows every acknowledged event exactly once, and each worker's events in
    acknowledgement order within a partition. (Across partitions, history orders by Redis
    millisecond, then partition: two events of the same millisecond in different partitions
    may swap; a run never spans partitions.)"""
    acked = ledger.acked
    assert len(set(acked)) == len(acked), "the workload reused an event id"
    stats = (await client.get(base + "/api/stats")).raise_for_status().json()
    assert stats["total"] == len(acked), (stats["total"], len(acked))
    assert stats["by_source"] == dict(ledger.by_source)
    assert stats["runs"] == {"running": 0, "completed": len(ledger.runs), "failed": 0}

    seen = await history_ids(client, base)
    assert len(seen) == len(acked), "history holds a duplicate or misses an event"
    assert set(seen) == set(acked)
    position = {event: i for i, event in enumerate(seen)}
    for worker, events in ledger.by_worker.items():
        for p in range(partitions):
            order = [position[e] for e, route in events if partition_for(route, partitions) == p]
            assert order == sorted(order), f"worker {worker}: history is not in arrival order"

    listing = (await client.get(base + "/api/runs", params={"limit": 1})).raise_for_status()
    assert listing.json()["total"] == len(ledger.runs)
    rng = random.Random(len(acked))
    for run_id in rng.sample(sorted(ledger.runs), min(sample_runs, len(ledger.runs))):
        run = (await client.get(f"{base}/api/runs/{run_id}")).raise_for_status().json()
        assert (run["status"], run["end_reason"]) == ("ended", "success"), run
        assert run["events"] == ledger.runs[run_id], run  # each event applied exactly once
        children = [c["id"] for c in run["children"]]
        assert children == [c for c, p in ledger.parents.items() if p == run_id]
