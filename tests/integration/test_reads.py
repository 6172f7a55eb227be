"""Read routes over the aggregator's state (services/stream/reads.py), through HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from services.stream import reads
from shared import keys
from shared.metrics import new_registry
from shared.redis import Client, per_slot_reads
from shared.service import Context, Service, build_app
from shared.settings import Settings
from tests.aggregator_support import consumer, llmonitor, publish, routing_key, webhook
from tests.helpers import app_client

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


@contextlib.asynccontextmanager
async def client(redis: Redis, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    ctx = Context(settings=settings, redis=redis, registry=new_registry())
    app = build_app(
        ctx, [Service(name="reads", routers=[reads.create_router(ctx)])], close_redis=False
    )
    async with app_client(app) as http:
        yield http


def seed() -> list[dict[str, Any]]:
    return [
        webhook("request", "start", command="chat", metadata={"session_id": "s1", "prompt": "hi"}),
        webhook(
            "completion",
            "completed",
            command="chat",
            metadata={"session_id": "s1", "tokens": 64, "duration_ms": 850},
        ),
        webhook(
            "error",
            "failed",
            command="ask",
            model="qwen2.5-coder:latest",
            metadata={"error": "refused"},
        ),
        webhook(
            "system",
            "info",
            command="system",
            model=None,
            metadata={"detail": "Model cache cleared"},
        ),
        llmonitor("start", "agent", type="agent", name="weather-agent"),
        llmonitor(
            "start",
            "llm",
            name="gpt-4o",
            parentRunId="agent",
            input=[{"role": "user", "content": "hi"}],
        ),
        llmonitor(
            "end",
            "llm",
            parentRunId="agent",
            timestamp="2026-01-01T00:00:01.000Z",
            tokensUsage={"prompt": 24, "completion": 5},
        ),
        llmonitor("start", "tool", type="tool", name="get_weather", parentRunId="agent"),
        llmonitor(
            "error",
            "tool",
            type="tool",
            parentRunId="agent",
            error={"message": "timeout"},
            timestamp="2026-01-01T00:00:01.000Z",
        ),
        llmonitor(
            "end", "agent", type="agent", timestamp="2026-01-01T00:00:02.000Z", output="sorry"
        ),
        llmonitor(
            "feedback", "llm", feedback={"thumbs": "up"}, timestamp="2026-01-01T00:00:03.000Z"
        ),
    ]


@pytest.fixture
async def seeded(
    redis: Redis, make_settings: Callable[..., Settings]
) -> tuple[Redis, Settings, list[dict[str, Any]]]:
    settings = make_settings(partitions=3)
    events = seed()
    stream_ids = await publish(redis, settings, events)
    await consumer(redis, settings).drain()
    for event, stream_id in zip(events, stream_ids, strict=True):
        ms, seq = stream_id.split("-")
        partition = keys.partition_for(routing_key(event), settings.partitions)
        event["_order"] = (int(ms), int(seq), partition)
    return redis, settings, events


async def test_stats(seeded: tuple[Redis, Settings, list[dict[str, Any]]]) -> None:
    redis, settings, _ = seeded
    async with client(redis, settings) as http:
        body = (await http.get("/api/stats")).json()
    assert body["total"] == 11
    assert body["by_source"] == {"llmonitor": 7, "webhook": 4}
    assert body["by_status"] == {"completed": 3, "failed": 2, "info": 2, "start": 4}
    assert body["error_rate"] == 0.4
    assert body["tokens"] == {"prompt": 24, "completion": 69, "total": 93}
    gpt = body["by_model"]["gpt-4o"]
    assert gpt["count"] == 5 and gpt["tokens_prompt"] == 24 and gpt["tokens_completion"] == 69
    assert gpt["p50_duration_ms"] is not None and gpt["cost_usd"] > 0
    assert body["by_model"]["qwen2.5-coder:latest"]["errors"] == 1
    assert body["runs"] == {"running": 0, "completed": 3, "failed": 1}
    assert body["events_per_second"] >= 0 and body["since"].endswith("Z")


async def test_history_pages_filters_and_cursor(
    seeded: tuple[Redis, Settings, list[dict[str, Any]]],
) -> None:
    redis, settings, events = seeded
    async with client(redis, settings) as http:
        pages, cursor = [], None
        while True:
            params = {"limit": 4, **({"before": cursor} if cursor else {})}
            body = (await http.get("/api/history", params=params)).json()
            pages.append(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        ids = [e["id"] for page in pages for e in page]
        # Newest first by arrival: stream order within a partition; across partitions by the
        # entry ids' milliseconds, then sequence, then partition.
        assert ids == [e["id"] for e in sorted(events, key=lambda e: e["_order"], reverse=True)]
        assert [len(p) for p in pages] == [4, 4, 3]
        errors = (await http.get("/api/history", params={"event_type": "error"})).json()["items"]
        assert sorted(e["command"] for e in errors) == ["ask", "tool:get_weather"]
        both = (
            await http.get("/api/history", params={"event_type": "error", "source": "webhook"})
        ).json()
        assert [e["command"] for e in both["items"]] == ["ask"]
        models = (await http.get("/api/history", params={"model": "gpt-4o"})).json()["items"]
        assert (
            len(models) == 5
        )  # 2 webhook events + 3 llm-run events (end and feedback took the name)
        found = (await http.get("/api/history", params={"q": "CACHE cleared"})).json()["items"]
        assert [e["event_type"] for e in found] == ["system"]
        for bad in ({"limit": 0}, {"limit": 5001}, {"before": "nope"}, {"limit": "x"}):
            response = await http.get("/api/history", params=bad)
            assert response.status_code == 422
            assert response.headers["content-type"] == "application/problem+json"


async def test_runs_list_filters_and_detail(
    seeded: tuple[Redis, Settings, list[dict[str, Any]]],
) -> None:
    redis, settings, _ = seeded
    async with client(redis, settings) as http:
        body = (await http.get("/api/runs")).json()
        assert body["total"] == 4 and {r["id"] for r in body["items"]} == {
            "s1",
            "agent",
            "llm",
            "tool",
        }
        failed = (await http.get("/api/runs", params={"status": "failed"})).json()
        assert [r["id"] for r in failed["items"]] == ["tool"] and failed["total"] == 1
        ended = (await http.get("/api/runs", params={"status": "ended", "app": "app-1"})).json()
        assert ended["total"] == 3
        chat = (await http.get("/api/runs", params={"task_name": "chat"})).json()
        assert [r["id"] for r in chat["items"]] == ["s1"]
        page = (await http.get("/api/runs", params={"limit": 2, "offset": 3})).json()
        assert len(page["items"]) == 1 and page["total"] == 4
        agent = (await http.get("/api/runs/agent")).json()
        assert agent["status"] == "ended" and agent["end_reason"] == "success"
        assert [c["id"] for c in agent["children"]] == ["llm", "tool"]
        assert agent["children"][0]["feedback"] == {"thumbs": "up"}
        missing = await http.get("/api/runs/nope")
        assert (
            missing.status_code == 404
            and missing.headers["content-type"] == "application/problem+json"
        )
        assert (await http.get("/api/runs", params={"status": "bogus"})).status_code == 422
        assert (await http.get("/api/runs", params={"limit": 501})).status_code == 422


async def test_notifications_rest(seeded: tuple[Redis, Settings, list[dict[str, Any]]]) -> None:
    redis, settings, _ = seeded
    async with client(redis, settings) as http:
        body = (await http.get("/api/notifications")).json()
        titles = sorted(n["title"] for n in body["items"])
        assert titles == ["ask failed", "get_weather failed"] and body["next_cursor"] is None
        assert (await http.get("/api/notifications/unread-count")).json() == {"count": 2}
        first = body["items"][0]["id"]
        assert (await http.post(f"/api/notifications/{first}/read")).status_code == 204
        assert (await http.get("/api/notifications/unread-count")).json() == {"count": 1}
        assert (await http.post(f"/api/notifications/{first}/unread")).status_code == 204
        assert (
            await http.post("/api/notifications/01ZZZZZZZZZZZZZZZZZZZZZZZZ/read")
        ).status_code == 404
        assert (await http.post("/api/notifications/read")).status_code == 204
        assert (await http.get("/api/notifications/unread-count")).json() == {"count": 0}
        page = (await http.get("/api/notifications", params={"limit": 1})).json()
        assert len(page["items"]) == 1 and page["next_cursor"] == page["items"][0]["id"]
        rest = (await http.get("/api/notifications", params={"before": page["next_cursor"]})).json()
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        assert (await http.get("/api/notifications", params={"limit": 0})).status_code == 422


async def test_deadletter_needs_the_admin_token(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(admin_token="s3cret", claim_idle_ms=100, max_deliveries=2)
    partition = settings.partitions - 1  # any partition: the last one, whatever their count
    await redis.xadd(keys.events_stream(partition), {keys.EVENT_FIELD: b"[1, 2]"})
    await consumer(redis, settings).drain()
    async with client(redis, settings) as http:
        denied = await http.get("/api/deadletter")
        assert (
            denied.status_code == 401
            and denied.headers["content-type"] == "application/problem+json"
        )
        wrong = await http.get("/api/deadletter", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        body = (
            await http.get("/api/deadletter", headers={"Authorization": "Bearer s3cret"})
        ).json()
    (letter,) = body["items"]
    assert letter["deliveries"] == 2 and letter["event"] == [1, 2]
    assert letter["partition"] == partition
    assert "not a DashboardEvent" in letter["error"]


def spread_ids(prefix: str, partitions: int) -> list[str]:
    """One run id per partition (`prefix-<n>`), in partition order."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(keys.partition_for(f"{prefix}-{n}", partitions), f"{prefix}-{n}")
        n += 1
    return [found[p] for p in range(partitions)]


def shards_of(redis: Client, partitions: list[int]) -> set[str]:
    """The cluster nodes holding these partitions' keys."""
    assert isinstance(redis, RedisCluster)
    return {redis.get_node_from_key(keys.stats_key(p)).name for p in partitions}


async def test_stats_history_and_run_tree_merge_across_six_partitions(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partitions=6)
    children = spread_ids("child", 6)
    root = next(c for c in spread_ids("root", 6) if keys.partition_for(c, 6) != 0)
    events = [llmonitor("start", root, type="agent", name="planner")]
    for i, child in enumerate(children):
        events += [
            llmonitor("start", child, name="gpt-4o", parentRunId=root,
                      timestamp=f"2026-01-01T00:00:0{i}.000Z"),
            llmonitor("end", child, parentRunId=root, timestamp=f"2026-01-01T00:00:0{i}.500Z",
                      tokensUsage={"prompt": 10 + i, "completion": i}),
        ]  # fmt: skip
    events.append(llmonitor("end", root, type="agent", timestamp="2026-01-01T00:00:09.000Z"))
    events += [webhook("error", "failed", command=f"job{i}", model=None) for i in range(12)]
    stream_ids = await publish(redis, settings, events)
    await consumer(redis, settings).drain()
    spread = [keys.partition_for(routing_key(e), 6) for e in events]
    assert set(spread) == set(range(6))  # every partition holds some of them
    if per_slot_reads(redis):
        assert len(shards_of(redis, list(range(6)))) == 3  # ... and every shard

    async with client(redis, settings) as http:
        stats = (await http.get("/api/stats")).json()
        assert stats["total"] == len(events) == 26
        assert stats["by_source"] == {"llmonitor": 14, "webhook": 12}
        assert stats["by_status"] == {"completed": 7, "failed": 12, "start": 7}
        assert stats["tokens"] == {"prompt": 75, "completion": 15, "total": 90}
        assert stats["by_model"]["gpt-4o"]["count"] == 12
        assert stats["runs"] == {"running": 0, "completed": 7, "failed": 0}
        assert stats["error_rate"] == round(12 / 19, 6)

        pages: list[list[dict[str, Any]]] = []
        cursor = None
        while cursor is not None or not pages:
            params = {"limit": 5, **({"before": cursor} if cursor else {})}
            body = (await http.get("/api/history", params=params)).json()
            pages.append(body["items"])
            cursor = body["next_cursor"]
        order = {
            e["id"]: (int(i.split("-")[0]), int(i.split("-")[1]), p)
            for e, i, p in zip(events, stream_ids, spread, strict=True)
        }
        expected = sorted(order, key=order.__getitem__, reverse=True)
        assert [e["id"] for page in pages for e in page] == expected
        assert [len(p) for p in pages] == [5, 5, 5, 5, 5, 1]
        failed = (await http.get("/api/history", params={"event_type": "error"})).json()
        assert sorted(e["command"] for e in failed["items"]) == sorted(f"job{i}" for i in range(12))

        tree = (await http.get(f"/api/runs/{root}")).json()
        assert tree["status"] == "ended" and tree["end_reason"] == "success"
        assert [c["id"] for c in tree["children"]] == children  # by start time
        assert [c["tokens"]["prompt"] for c in tree["children"]] == [10 + i for i in range(6)]
        child_partitions = {keys.partition_for(c, 6) for c in children}
        assert child_partitions == set(range(6)) and keys.partition_for(root, 6) != 0
        if per_slot_reads(redis):
            assert len(shards_of(redis, sorted(child_partitions))) == 3
        listed = (await http.get("/api/runs", params={"limit": 3})).json()
        assert listed["total"] == 7 and len(listed["items"]) == 3
