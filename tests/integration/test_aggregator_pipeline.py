"""The seed events posted through ingest change the read APIs as CONTRACT §2 says
(ingest -> event streams -> aggregator -> state -> read routes, in one `all` app)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.targets import create_app
from shared.samples import DEMO_APP, all_samples
from shared.settings import Settings
from tests.helpers import app_client

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


async def settle(http: httpx.AsyncClient, total: int) -> dict[str, Any]:
    for _ in range(400):
        stats = (await http.get("/api/stats")).json()
        if stats["total"] >= total:
            return stats
        await asyncio.sleep(0.025)
    raise AssertionError(f"stats stuck at {stats['total']} of {total}")


def posted_events(samples: list[tuple[str, Any]]) -> int:
    count = 0
    for _, body in samples:
        if isinstance(body, list):
            count += len(body)
        elif isinstance(body, dict) and isinstance(body.get("events"), list):
            count += len(body["events"])
        else:
            count += 1
    return count


async def test_seed_events_reach_every_read_api(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(apps=[DEMO_APP], partitions=2, consumer_block_ms=20)
    samples = all_samples()
    async with app_client(create_app(settings, "all")) as http:
        for path, body in samples:
            response = await http.post(path, json=body)
            assert response.status_code == 200, response.text
        stats = await settle(http, posted_events(samples))
        assert stats["total"] == posted_events(samples) == 21
        assert stats["by_source"] == {"llmonitor": 7, "webhook": 14}
        assert stats["by_status"]["failed"] == 2 and stats["error_rate"] == 0.25
        assert stats["tokens"] == {"prompt": 24, "completion": 453, "total": 477}
        assert stats["by_model"]["gpt-4o"]["cost_usd"] == pytest.approx(24 * 2.5e-6 + 5 * 10e-6)
        assert stats["by_model"]["qwen2.5-coder:latest"]["cost_usd"] is None
        assert stats["runs"] == {"running": 0, "completed": 3, "failed": 1}

        history = (await http.get("/api/history", params={"limit": 50})).json()
        assert len(history["items"]) == 21 and history["next_cursor"] is None
        assert {e["source"] for e in history["items"]} == {"webhook", "llmonitor"}

        runs = (await http.get("/api/runs")).json()
        by_task = {r["task_name"]: r for r in runs["items"]}
        assert runs["total"] == 4 and set(by_task) == {
            "weather-agent",
            "gpt-4o",
            "get_weather",
            "chat",
        }
        agent = (await http.get(f"/api/runs/{by_task['weather-agent']['id']}")).json()
        assert sorted(c["task_name"] for c in agent["children"]) == ["get_weather", "gpt-4o"]
        llm = next(c for c in agent["children"] if c["task_name"] == "gpt-4o")
        assert llm["feedback"] == {"thumbs": "up"} and llm["tokens"]["estimated"] is False
        assert (
            by_task["chat"]["status"] == "ended" and by_task["chat"]["tokens"]["completion"] == 64
        )

        bell = (await http.get("/api/notifications")).json()
        assert sorted(n["title"] for n in bell["items"]) == ["ask failed", "get_weather failed"]
        assert (await http.get("/api/notifications/unread-count")).json() == {"count": 2}
