"""Runs on a real Redis: events of a run tree applied in any order and any batches converge to the
same runs, stats and notifications; the `run.*` feed entries are the bytes the fold describes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.aggregator.fold import fold, prepare
from services.stream.reads import read_run, read_stats
from shared import keys, notify
from shared.redis import connect
from shared.settings import Settings
from tests.aggregator_support import consumer, llmonitor, publish, routing_key

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

T = [f"2026-01-01T00:00:0{i}.000Z" for i in range(6)]


def run_tree() -> list[dict[str, Any]]:
    return [
        llmonitor(
            "start", "agent", type="agent", name="weather-agent", timestamp=T[0], input="Paris?"
        ),
        llmonitor(
            "start",
            "llm",
            name="gpt-4o",
            parentRunId="agent",
            timestamp=T[1],
            input=[{"role": "user", "content": "Paris?"}],
        ),
        llmonitor(
            "end",
            "llm",
            parentRunId="agent",
            timestamp=T[2],
            output={"content": "Sunny"},
            tokensUsage={"prompt": 10, "completion": 3},
        ),
        llmonitor(
            "start", "tool", type="tool", name="get_weather", parentRunId="agent", timestamp=T[3]
        ),
        llmonitor(
            "error",
            "tool",
            type="tool",
            parentRunId="agent",
            timestamp=T[4],
            error={"message": "timeout"},
        ),
        llmonitor("end", "agent", type="agent", timestamp=T[5], output="sorry"),
        llmonitor("feedback", "llm", timestamp=T[5], feedback={"thumbs": "up"}),
    ]


async def converge(
    settings: Settings, order: list[dict[str, Any]], sizes: list[int]
) -> dict[str, Any]:
    redis = connect(settings)
    try:
        await redis.flushall()
        start = 0
        for size in [*sizes, len(order)]:
            await publish(redis, settings, order[start : start + size])
            await consumer(redis, settings).drain()
            start += size
        agent = await read_run(redis, settings.partitions, "agent")
        stats = await read_stats(redis, settings.partitions)
        for volatile in ("events_per_second", "since"):
            stats.pop(volatile)
        rows, _ = await notify.list_rows(redis, 10, None)
        # The bell names the run as known when its failure was applied: the run type when the
        # error arrived before the start that carries the name.
        return {
            "agent": agent,
            "stats": stats,
            "bell": [(r["run_id"], r["count"]) for r in rows],
            "titles": {r["title"] for r in rows},
        }
    finally:
        await redis.aclose()


@hsettings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_out_of_order_run_events_converge(
    make_settings: Callable[..., Settings], data: st.DataObject
) -> None:
    settings = make_settings(partitions=3)
    events = run_tree()
    expected = asyncio.run(converge(settings, events, []))
    order = data.draw(st.permutations(events))
    sizes = data.draw(st.lists(st.integers(1, 3), max_size=3))
    got = asyncio.run(converge(settings, list(order), sizes))
    assert got["titles"] <= {"get_weather failed", "tool failed"}
    expected.pop("titles"), got.pop("titles")
    assert got == expected
    agent = got["agent"]
    assert agent["status"] == "ended" and agent["end_reason"] == "success"
    assert [c["id"] for c in agent["children"]] == ["llm", "tool"]
    llm = agent["children"][0]
    assert llm["tokens"] == {"prompt": 10, "completion": 3, "estimated": False}
    assert llm["feedback"] == {"thumbs": "up"} and llm["task_name"] == "gpt-4o"
    assert got["bell"] == [("tool", 1)]
    assert got["stats"]["by_model"]["gpt-4o"]["count"] == 3
    assert got["stats"]["runs"] == {"running": 0, "completed": 2, "failed": 1}


async def test_run_feed_entries_are_the_bytes_the_fold_describes(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    tree = run_tree()
    await publish(redis, settings, tree)
    await consumer(redis, settings).drain()
    got = []
    for p in range(settings.partitions):
        for _, f in await redis.xrange(keys.feed_stream(p)):
            if f[keys.FEED_TYPE_FIELD] != b"event":
                got.append((f[keys.FEED_TYPE_FIELD].decode(), f[keys.FEED_DATA_FIELD]))
    expected = []
    for p in range(settings.partitions):
        mine = [e for e in tree if keys.partition_for(routing_key(e), settings.partitions) == p]
        items = [(f"{1_700_000_000_000 + i}-0", orjson.dumps(e)) for i, e in enumerate(mine)]
        expected += fold(prepare(items), set(), {}).feed
    assert sorted(got) == sorted(expected)
    assert {name for name, _ in got} >= {
        "run.created",
        "run.started",
        "run.completed",
        "run.failed",
    }
