"""The write routes against a real Redis (single and cluster): every seed sample lands, every
error row of CONTRACT §1 answers as documented, and a refused request publishes nothing.
What was published is read back from every partition's stream: events land in the partition of
their run or session, so only events of one run/session have an order to check."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
import orjson
import pytest

from services.ingest.llmonitor import event_id
from shared.keys import EVENT_FIELD, events_stream, partition_for
from shared.redis import Client
from shared.samples import LLMONITOR_PATHS, WATCHER_PATH, all_samples, llmonitor_samples
from shared.settings import Settings
from tests import ingest_support
from tests.ingest_support import (
    APP_ID,
    Streams,
    count_events,
    event,
    ingest,
    problem,
    run_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

client, streams = ingest_support.client, ingest_support.streams  # the fixtures, by name


async def test_every_seed_sample_lands_with_source_overwritten(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    expected = 0
    for path, body in all_samples(APP_ID):
        response = await client.post(path, json=body)
        assert response.status_code == 200, (path, response.text)
        if path == WATCHER_PATH:
            assert response.json() == {"ok": True}
        else:
            assert all(r["success"] for r in response.json()["results"])
        expected += count_events(body)
    events = await streams.events()
    assert len(events) == expected
    llmonitor = [e for e in events if e["source"] == "llmonitor"]
    assert len(llmonitor) == sum(count_events(b) for _, b in llmonitor_samples(APP_ID))
    assert all(e["source"] == "webhook" for e in events if e not in llmonitor)
    assert all(e["metadata"]["app"] == APP_ID for e in llmonitor)


async def test_source_is_overwritten_and_loose_variants_are_accepted(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    session = str(uuid.uuid4())
    bodies = [
        {
            "event_type": "request",
            "command": "chat",
            "status": "start",
            "source": "spoofed",
            "session_id": session,
        },
        {
            "event_type": "streaming",
            "command": "chat",
            "status": "streaming",
            "session_id": session,
            "tokens_so_far": 32,
        },
        {
            "event_type": "completion",
            "command": "chat",
            "status": "complete",
            "session_id": session,
            "duration_ms": 850,
            "metadata": {"tokens": 64},
        },
        {
            "event_type": "system",
            "command": "chat",
            "status": "end",
            "metadata": {"session_id": session},
        },
        {
            "event_type": "error",
            "command": "chat",
            "status": "error",
            "id": "fixed-id",
            "timestamp": 1767225600000,
        },
    ]
    for body in bodies:
        assert (await client.post(WATCHER_PATH, json=body)).status_code == 200
    events = await streams.events()
    assert len(events) == 5
    assert {e["source"] for e in events} == {"webhook"}
    assert all(e["timestamp"].endswith("Z") for e in events)
    # the session's events share a partition, in the order they were sent
    ours = [e for e in events if e["metadata"].get("session_id") == session]
    assert [e["status"] for e in ours] == ["start", "running", "completed", "completed"]
    assert ours[1]["metadata"]["tokens_so_far"] == 32
    assert ours[2]["metadata"] == {"tokens": 64, "session_id": session, "duration_ms": 850}
    [fixed] = [e for e in events if e["id"] == "fixed-id"]
    assert (fixed["status"], fixed["timestamp"]) == ("failed", "2026-01-01T00:00:00.000Z")


async def test_batch_is_published_in_order(client: httpx.AsyncClient, streams: Streams) -> None:
    # five sessions, interleaved: each lands in its partition in the order of the batch
    sessions = [f"order-{i}" for i in range(5)]
    events = [event(command=f"c{i}", session_id=sessions[i % 5]) for i in range(50)]
    batch = {"batch": True, "events": events}
    assert (await client.post(WATCHER_PATH, json=batch)).json() == {"ok": True}
    stored = await streams.events()
    assert len(stored) == 50
    for session in sessions:
        sent = [e["command"] for e in events if e["session_id"] == session]
        assert [e["command"] for e in stored if e["metadata"]["session_id"] == session] == sent


async def test_llmonitor_app_from_bearer_and_single_object_forms(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    bearer = {"authorization": f"Bearer {APP_ID}"}
    one = run_event(app=None)
    response = await client.post("/v1/runs/ingest", json={"events": one}, headers=bearer)
    assert response.json() == {"results": [{"id": one["runId"], "success": True}]}
    response = await client.post("/api/report", json=run_event(), headers=bearer)
    assert response.status_code == 200
    events = await streams.events()
    assert [e["metadata"]["app"] for e in events] == [APP_ID, APP_ID]


async def test_resent_llmonitor_event_keeps_its_id(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    raw = run_event(timestamp="2026-01-01T00:00:00Z")
    await client.post("/v1/runs/ingest", json=[raw])
    await client.post("/api/report", json=[{**raw, "timestamp": 1767225600000}])
    ids = [e["id"] for e in await streams.events()]
    assert ids == [event_id(raw["runId"], "start", "2026-01-01T00:00:00.000Z")] * 2


async def test_partitions_follow_the_run_or_session(
    make_settings: Callable[..., Settings], redis: Client
) -> None:
    partitions = 4
    async with ingest(make_settings(partitions=partitions, apps=[APP_ID])) as client:
        sessions = [f"s{i}" for i in range(12)]
        for s in sessions:
            await client.post(WATCHER_PATH, json=event(session_id=s))
        runs = [run_event(runId=f"r{i}") for i in range(12)]
        await client.post(LLMONITOR_PATHS[0], json={"events": runs})
    for p in range(partitions):
        for _, fields in await redis.xrange(events_stream(p)):
            e = orjson.loads(fields[EVENT_FIELD])
            key = e["metadata"].get("session_id") or e["metadata"].get("runId")
            assert partition_for(key, partitions) == p
    assert await Streams(redis, partitions).total() == 24


async def test_many_concurrent_posts_all_land(client: httpx.AsyncClient, streams: Streams) -> None:
    singles = [client.post(WATCHER_PATH, json=event(command=f"c{i}")) for i in range(150)]
    batches = [client.post(WATCHER_PATH, json=[event() for _ in range(10)]) for _ in range(20)]
    runs = [client.post(LLMONITOR_PATHS[i % 2], json=[run_event()]) for i in range(30)]
    answers = await asyncio.gather(*singles, *batches, *runs)
    assert {r.status_code for r in answers} == {200}
    assert await streams.total() == 150 + 200 + 30


async def test_undocumented_values_are_kept_and_counted(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    await client.post(WATCHER_PATH, json=event(event_type="tool_call", status="Paused"))
    [stored_event] = await streams.events()
    assert (stored_event["event_type"], stored_event["status"]) == ("tool_call", "Paused")
    metrics = (await client.get("/metrics")).text
    assert (
        'llmwatch_ingest_undocumented_values_total{field="status",source="webhook"} 1.0' in metrics
    )
    assert 'llmwatch_ingest_events_accepted_total{source="webhook"} 1.0' in metrics


async def test_openapi_declares_the_request_bodies(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    for path in (WATCHER_PATH, *LLMONITOR_PATHS, "/api/apps"):
        assert doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "422" in doc["paths"][WATCHER_PATH]["post"]["responses"]
    assert "207" in doc["paths"]["/v1/runs/ingest"]["post"]["responses"]


async def test_readyz_pings_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200 and response.json()["checks"]["ingest"] == "ok"


async def test_fast_routes_keep_metrics_cors_and_405(
    make_settings: Callable[..., Settings], streams: Streams
) -> None:
    settings = make_settings(cors_origins=["https://app.example"])
    async with ingest(settings) as client:
        origin = {"origin": "https://app.example"}
        response = await client.post(WATCHER_PATH, json=event(), headers=origin)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        problem(await client.get(WATCHER_PATH), 405)
        problem(await client.post(WATCHER_PATH, content=b"{"), 400)  # errors rendered here too
        metrics = (await client.get("/metrics")).text
    label = 'method="POST",route="/api/open-wrapper",status="200"'
    assert f"llmwatch_http_request_duration_seconds_count{{{label}}} 1.0" in metrics
    assert await streams.total() == 1
