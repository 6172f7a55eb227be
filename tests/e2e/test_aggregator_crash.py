"""`llmwatch serve aggregator` killed with SIGKILL twice at random moments: after a restart,
stats and history equal exactly what was published (CONTRACT §2: exactly once)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.stream.reads import read_stats
from shared import history, keys
from shared.settings import Settings
from tests.aggregator_support import llmonitor, publish, webhook
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.both_redis]

PARTITIONS = 4
TOTAL = 20_000


def workload(rng: random.Random) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while len(events) < TOTAL:
        kind = rng.random()
        if kind < 0.6:
            status = "failed" if rng.random() < 0.05 else "completed"
            events.append(
                webhook(
                    "completion",
                    status,
                    command=f"cmd{rng.randrange(5)}",
                    metadata={
                        "tokens": rng.randrange(1, 500),
                        "session_id": f"s{rng.randrange(300)}",
                    },
                )
            )
        else:
            run = f"run-{len(events)}"
            events.append(llmonitor("start", run, name="gpt-4o", input="hello"))
            events.append(
                llmonitor(
                    "end",
                    run,
                    timestamp="2026-01-01T00:00:01.000Z",
                    tokensUsage={"prompt": 3, "completion": 4},
                )
            )
    return events[:TOTAL]


def start(port: int, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMWATCH_")}
    env.update(
        REDIS_URL=redis_url,
        LLMWATCH_PARTITIONS=str(PARTITIONS),
        LLMWATCH_CLAIM_IDLE_MS="300",
        LLMWATCH_CONSUMER_BATCH="200",
        LLMWATCH_CONSUMER_BLOCK_MS="100",
        LLMWATCH_CONFIG=str(log.parent / "absent.toml"),
    )
    cli = Path(sys.executable).with_name("llmwatch")
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(cli), "serve", "aggregator", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def applied(redis: Redis) -> int:
    return int((await read_stats(redis, PARTITIONS))["total"])


async def wait_for(predicate: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


async def settled(redis: Redis) -> bool:
    if await applied(redis) != TOTAL:
        return False
    for p in range(PARTITIONS):
        if (await redis.xpending(keys.events_stream(p), keys.AGGREGATOR_GROUP))["pending"]:
            return False
        if await redis.hlen(keys.outbox_key(p)):
            return False
    return True


@pytest.mark.timeout(120)
async def test_kill_9_twice_then_restart_loses_and_repeats_nothing(
    redis: Redis, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(partitions=PARTITIONS)
    assert settings.redis_url
    rng = random.Random()
    events = workload(rng)
    log = tmp_path / "aggregator.log"
    port = free_port()
    proc = start(port, settings.redis_url, log)
    try:
        for chunk in range(0, TOTAL, 2000):
            await publish(redis, settings, events[chunk : chunk + 2000])
        for _ in range(2):  # two crashes at random moments while it works
            target = (await applied(redis)) + rng.randrange(500, 6000)
            await wait_for(lambda t=target: _at_least(redis, t), 40)
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            proc = start(port, settings.redis_url, log)
        await wait_for(lambda: settled(redis), 45)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), log.read_text()[-2000:]

    stats = await read_stats(redis, PARTITIONS)
    webhooks = [e for e in events if e["source"] == "webhook"]
    assert stats["total"] == TOTAL
    assert stats["by_source"] == {
        k: v for k, v in {"llmonitor": TOTAL - len(webhooks), "webhook": len(webhooks)}.items() if v
    }
    assert stats["by_status"].get("failed", 0) == sum(e["status"] == "failed" for e in events)
    completion = sum(e["metadata"]["tokens"] for e in webhooks)
    completion += sum(e["metadata"].get("tokensUsage", {}).get("completion", 0) for e in events)
    assert stats["tokens"]["completion"] == completion
    items, cursor = await history.read_page(redis, PARTITIONS, history.Query(limit=5000))
    seen = [i["id"] for i in items]
    while cursor:
        items, cursor = await history.read_page(
            redis, PARTITIONS, history.Query(limit=5000, before=history.decode_cursor(cursor))
        )
        seen += [i["id"] for i in items]
    assert len(seen) == TOTAL and set(seen) == {e["id"] for e in events}
    assert "Traceback" not in log.read_text()


async def _at_least(redis: Redis, target: int) -> bool:
    return await applied(redis) >= min(target, TOTAL)
