"""Open-loop senders: events POSTed to ingest at a fixed rate, each stamped with its send time.

Open loop means the schedule does not wait for answers (a slow server does not slow the offered
load down); a send that finds no free connection waits for one and is counted as late.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench import bodies
from bench.client import Connection

PATH = "/api/open-wrapper"


@dataclass
class SendReport:
    sent: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    late: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return {"sent": self.sent, "ok": self.ok, "late": self.late, "statuses": self.statuses,
                "seconds": round(self.seconds, 3), "rate": round(rate, 1)}  # fmt: skip


async def paced(
    port: int,
    *,
    rate: float,
    duration: float,
    per_post: int = 1,
    connections: int = 16,
    marker: str = "bench_t",
    run: str | None = None,
) -> SendReport:
    """POST `rate` events/s for `duration` s, `per_post` events per request (a batch when > 1).

    Event ids are `<run>-<n>`; `run` defaults to a fresh random tag, since the aggregator
    counts a repeated id once (and would then deliver nothing)."""
    head, mid, tail = bodies.paced_parts(marker)
    run = run or bodies.new_run_id()
    seq = itertools.count()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(Connection("127.0.0.1", port))
    report = SendReport()
    tasks: set[asyncio.Task[None]] = set()

    def body() -> bytes:
        ns = str(time.time_ns()).encode()
        events = [head + f"{run}-{next(seq)}".encode() + mid + ns + tail for _ in range(per_post)]
        if per_post == 1:
            return events[0]
        return b'{"batch":true,"events":[' + b",".join(events) + b"]}"

    async def send(conn: Connection) -> None:
        try:
            status, _ = await conn.request("POST", PATH, body())
        except (OSError, asyncio.IncompleteReadError) as exc:
            key = type(exc).__name__
        else:
            key = str(status)
            if status == 200:
                report.ok += per_post
        report.statuses[key] = report.statuses.get(key, 0) + 1
        idle.put_nowait(conn)

    start = time.perf_counter()
    posts = int(rate * duration / per_post)
    interval = per_post / rate
    for k in range(posts):
        due = start + k * interval
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if idle.empty():
            report.late += 1
        conn = await idle.get()
        report.sent += per_post
        task = asyncio.create_task(send(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    report.seconds = time.perf_counter() - start
    await _close(idle)
    return report


async def bulk(
    port: int, requests: Iterable[tuple[str, bytes]], *, connections: int = 4
) -> dict[str, int]:
    """POST every (path, body) as fast as `connections` keep-alive connections allow."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    statuses: dict[str, int] = {}

    async def worker() -> None:
        conn = Connection("127.0.0.1", port)
        try:
            while not queue.empty():
                path, body = queue.get_nowait()
                status, _ = await conn.request("POST", path, body)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses


async def _close(idle: asyncio.Queue[Connection]) -> None:
    while not idle.empty():
        await idle.get_nowait().close()
