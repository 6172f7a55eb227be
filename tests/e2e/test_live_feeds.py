"""End to end in one process, as `llmwatch up` runs it: post the seed events through ingest, the
aggregator folds them, and both SSE feeds carry them; the notification bell's REST calls push
`notification.updated` and `notifications.unread_count_changed` live. On one Redis and on a
3-master cluster (6 partitions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from shared.samples import DEMO_APP, all_samples
from shared.settings import Settings
from tests.integration.sse_support import Feed, Received, feed, hub_of, serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.both_redis]

ALL = ("ingest", "aggregator", "stream", "metrics")


def count_events(samples: list[tuple[str, Any]]) -> int:
    total = 0
    for _, body in samples:
        if isinstance(body, list):
            total += len(body)
        elif isinstance(body, dict) and isinstance(body.get("events"), list):
            total += len(body["events"])
        else:
            total += 1
    return total


async def collect(stream: Feed, until_: Callable[[list[Received]], bool]) -> list[Received]:
    got: list[Received] = []
    while not until_(got):
        got.append(await stream.next(timeout=20))
    return got


async def test_posted_events_reach_both_feeds_and_the_bell_updates_live(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(apps=[DEMO_APP], sample_interval_s=0.2)
    samples = all_samples()
    expected = count_events(samples)
    async with (
        serve(settings, *ALL) as (base, app),
        httpx.AsyncClient(base_url=base, timeout=20) as client,
        feed(client, "/api/stream") as stream,
        feed(client, "/api/events") as events,
    ):
        await stream.next(pings=True)
        await until(lambda: hub_of(app).subscribers == 2)
        posted_ids = set()
        for path, body in samples:
            response = await client.post(path, json=body)
            assert response.status_code == 200, (path, response.text)
            if isinstance(body, dict) and "id" in body:
                posted_ids.add(body["id"])

        plain = [await events.next(timeout=20) for _ in range(expected)]
        assert all(m.event == "message" and m.id for m in plain)
        dashboard = [orjson.loads(m.data) for m in plain]
        assert {e["source"] for e in dashboard} == {"webhook", "llmonitor"}
        assert posted_ids <= {e["id"] for e in dashboard}
        for e in dashboard:
            assert {"id", "timestamp", "event_type", "command", "status", "metadata"} <= set(e)
        # a late LLM Watcher client: the newest history events first (oldest of them first)
        newest = (await client.get("/api/history", params={"limit": 5})).json()["items"]
        async with feed(client, "/api/events?snapshot=5") as late:
            snapshot = [orjson.loads(m.data) for m in await late.take(5)]
        assert snapshot == newest[::-1]
        assert {orjson.dumps(e) for e in snapshot} <= {orjson.dumps(e) for e in dashboard}

        named = await collect(stream, lambda got: (
            sum(r.event == "event" for r in got) >= expected
            and any(r.event == "run.failed" for r in got)
            and any(r.event == "notification.created" for r in got)
            and any(r.event == "system" for r in got)
        ))  # fmt: skip
        same = [r for r in named if r.event == "event"][:expected]
        assert [(r.id, r.data) for r in same] == [(m.id, m.data) for m in plain]
        failed = orjson.loads(next(r for r in named if r.event == "run.failed").data)
        assert failed["run"]["status"] == "ended" and failed["run"]["end_reason"] == "failed"
        created = orjson.loads(next(r for r in named if r.event == "notification.created").data)
        assert created["unread_count"] >= 1 and created["notification"]["kind"]

        # the bell over REST, with its changes pushed live
        async with feed(
            client, "/api/stream?events=notification.updated,notifications.unread_count_changed"
        ) as bell:
            await bell.next(pings=True)
            unread = (await client.get("/api/notifications/unread-count")).json()["count"]
            assert unread >= 1
            items = (await client.get("/api/notifications")).json()["items"]
            target = items[0]["id"]
            assert (await client.post(f"/api/notifications/{target}/read")).status_code == 204
            updated, changed = await bell.take(2)
            assert updated.event == "notification.updated"
            row = orjson.loads(updated.data)["notification"]
            assert row["id"] == target and row["read_at"]
            assert changed.event == "notifications.unread_count_changed"
            assert orjson.loads(changed.data) == {"unread_count": unread - 1}
            assert (await client.post(f"/api/notifications/{target}/unread")).status_code == 204
            updated, changed = await bell.take(2)
            assert orjson.loads(updated.data)["notification"]["read_at"] is None
            assert orjson.loads(changed.data) == {"unread_count": unread}
            assert (await client.post("/api/notifications/read")).status_code == 204
            rest = await collect(bell, lambda got: any(
                r.event == "notifications.unread_count_changed" for r in got
            ))  # fmt: skip
            assert orjson.loads(rest[-1].data) == {"unread_count": 0}
            assert (await client.get("/api/notifications/unread-count")).json() == {"count": 0}
            assert (await client.post("/api/notifications/nope/read")).status_code == 404
