"""Clock skew and out-of-order timestamps (clients' clocks, and the ingest host's own clock) do
not break what history and runs promise: history is in arrival order whatever the timestamps
say, and a run converges to the same view whatever order its events arrive in (README,
Guarantees: ordering)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis as sync_redis

from services.targets import FACTORIES
from shared.metrics import new_registry
from shared.redis import connect
from shared.service import Context, build_app
from shared.settings import Settings
from tests.helpers import app_client
from tests.loadgen import history_ids, until

pytestmark = pytest.mark.integration

APP = "clock-app"
SKEWED = [  # what clients with wrong clocks send, in no particular order
    "2099-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z", "2026-01-01T12:00:00+14:00",
    "2026-01-01T12:00:00-12:00", "2026-01-01T12:00:00Z", "2026-01-01T12:00:00Z",
    "2001-09-09T01:46:40.000001Z", "2026-01-01T11:59:59.999Z",
]  # fmt: skip


@contextlib.asynccontextmanager
async def pipeline(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Ingest, aggregator and read side in one app (background consumer running)."""
    ctx = Context(settings=settings, redis=connect(settings), registry=new_registry())
    services = [FACTORIES[name](ctx) for name in ("ingest", "aggregator", "stream")]
    async with app_client(build_app(ctx, services)) as client:
        yield client


async def applied(client: httpx.AsyncClient, total: int) -> None:
    async def done() -> bool:
        return (await client.get("/api/stats")).json()["total"] >= total

    await until(done, timeout=20, every=0.02)


def watcher(i: int, timestamp: str | None, session: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"id": f"e{i}", "event_type": "request", "command": "ask",
                             "status": "start" if i % 2 == 0 else "completed"}  # fmt: skip
    if timestamp is not None:
        event["timestamp"] = timestamp
    if session is not None:
        event["session_id"] = session
    return event


@pytest.mark.parametrize("partitions", [1, 4])
async def test_history_is_arrival_order_whatever_the_client_clocks_say(
    make_settings: Callable[..., Settings], partitions: int
) -> None:
    rng = random.Random(partitions)
    sessions = [f"s{n}" for n in range(5)]
    events = [watcher(i, rng.choice(SKEWED), rng.choice(sessions)) for i in range(40)]
    async with pipeline(make_settings(partitions=partitions)) as client:
        for event in events:  # one request each: arrival order is posting order
            assert (await client.post("/api/open-wrapper", json=event)).status_code == 200
        await applied(client, len(events))
        seen = await history_ids(client, "")
    if partitions == 1:
        assert seen == [e["id"] for e in events]
    # a run (session) never spans partitions: its events keep their arrival order anywhere
    for session in sessions:
        mine = [e["id"] for e in events if e["session_id"] == session]
        assert [i for i in seen if i in mine] == mine


async def test_history_is_arrival_order_when_the_ingest_clock_steps_back(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events without a timestamp get the receive time: here a clock going backwards (NTP step).
    receive_times = iter(f"2026-01-01T00:00:{59 - s:02d}.000Z" for s in range(60))
    monkeypatch.setattr("services.ingest.routes.now_timestamp", lambda: next(receive_times))
    events = [watcher(i, None) for i in range(20)]
    async with pipeline(make_settings()) as client:
        for event in events:
            assert (await client.post("/api/open-wrapper", json=event)).status_code == 200
        await applied(client, len(events))
        seen = await history_ids(client, "")
        page = (await client.get("/api/history", params={"limit": 1})).json()["items"]
    assert seen == [e["id"] for e in events]
    assert page[0]["timestamp"] == "2026-01-01T00:00:40.000Z"  # the newest arrival, oldest clock


def run_tree() -> list[tuple[str, dict[str, Any]]]:
    """A chain with an llm child and a tool child, from hosts whose clocks disagree: the child's
    clock is an hour behind, the parent's end is stamped before its start, epoch ms mixed in."""

    def lm(event: str, run: str, ts: Any, **extra: Any) -> tuple[str, dict[str, Any]]:
        return "/v1/runs/ingest", {"type": extra.pop("type", "chain"), "event": event, "app": APP,
                                   "runId": run, "timestamp": ts, **extra}  # fmt: skip

    return [
        lm("start", "root", "2026-01-01T12:00:00Z", name="agent", input="plan", tags=["a"]),
        lm("end", "root", "2026-01-01T11:59:58Z", output="done"),
        lm("feedback", "root", "2026-01-01T12:00:05Z", feedback={"thumbs": "up"}),
        lm("start", "llm-1", "2026-01-01T11:00:00.500Z", type="llm", name="gpt-4o",
           parentRunId="root", input="hello", tags=["b"]),
        lm("end", "llm-1", 1767265201000, type="llm", parentRunId="root", output="hi",
           tokensUsage={"prompt": 3, "completion": 4}),
        lm("start", "tool-1", "2026-01-01T12:00:01Z", type="tool", name="search",
           parentRunId="root", input={"q": "x"}),
        lm("error", "tool-1", "2026-01-01T12:00:00.900Z", type="tool", parentRunId="root",
           error={"message": "boom"}),
        ("/api/open-wrapper", {"id": "w1", "event_type": "completion", "command": "ask",
                               "status": "completed", "session_id": "sess",
                               "timestamp": "2026-01-01T10:00:00Z", "metadata": {"tokens": 5}}),
        ("/api/open-wrapper", {"id": "w0", "event_type": "request", "command": "ask",
                               "status": "start", "session_id": "sess",
                               "timestamp": "2026-01-01T10:00:07Z"}),
    ]  # fmt: skip


def orders(count: int) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    rng = random.Random(7)
    events = run_tree()
    yield events
    yield events[::-1]  # ends before starts, children before parents
    for _ in range(count - 2):
        yield rng.sample(events, len(events))


@pytest.mark.parametrize("partitions", [1, 3])
async def test_runs_converge_whatever_order_and_clocks(
    make_settings: Callable[..., Settings], partitions: int
) -> None:
    settings = make_settings(partitions=partitions, apps=[APP])
    views: list[Any] = []
    for order in orders(5):
        sync_redis.Redis.from_url(settings.redis_url or "").flushall()
        async with pipeline(settings) as client:
            for path, event in order:
                response = await client.post(path, json=event)
                assert response.status_code == 200, response.text
            await applied(client, len(order))
            runs = [(await client.get(f"/api/runs/{r}")).json() for r in ("root", "sess")]
            listing = (await client.get("/api/runs", params={"limit": 50})).json()
            # the list is newest first by the arrival of each run's first event: compare by id
            listing["items"] = sorted(listing["items"], key=lambda run: run["id"])
            stats = (await client.get("/api/stats")).json()
        for key in ("since", "events_per_second"):  # wall-clock readings, not event facts
            stats.pop(key)
        views.append((runs, listing, stats))
    for view in views[1:]:
        assert view == views[0]
    (root, session), listing, stats = views[0]
    assert (root["status"], root["end_reason"]) == ("ended", "success")
    assert [c["id"] for c in root["children"]] == ["llm-1", "tool-1"]
    assert {c["id"]: c["end_reason"] for c in root["children"]} == {
        "llm-1": "success", "tool-1": "failed"}  # fmt: skip
    assert root["feedback"] == {"thumbs": "up"} and root["tags"] == ["a"]
    assert (session["status"], session["task_name"]) == ("ended", "ask")
    assert listing["total"] == 4
    assert stats["runs"] == {"running": 0, "completed": 3, "failed": 1}
