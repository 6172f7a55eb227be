"""The write routes against a real Redis (single and cluster): every seed sample lands, every
error row of CONTRACT §1 answers as documented, and a refused request publishes nothing.
What was published is read back from every partition's stream: events land in the partition of
their run or session, so only events of one run/session have an order to check."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from services.ingest.auth import sign
from services.ingest.llmonitor import event_id
from services.targets import create_app
from shared.keys import EVENT_FIELD, events_stream, partition_for
from shared.redis import Client
from shared.samples import LLMONITOR_PATHS, WATCHER_PATH, all_samples, llmonitor_samples
from shared.settings import Settings
from tests.helpers import app_client

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

APP_ID = "app-registered"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "errors"}


@contextlib.asynccontextmanager
async def ingest(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, "ingest")
    async with app_client(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with ingest(make_settings(apps=[APP_ID])) as c:
        yield c


@dataclass
class Streams:
    """The event streams of `partitions` partitions, read back."""

    redis: Client
    partitions: int

    async def events(self) -> list[dict[str, Any]]:
        """Every stored event, partition by partition (stream order within each)."""
        events: list[dict[str, Any]] = []
        for p in range(self.partitions):
            entries = await self.redis.xrange(events_stream(p))
            events += [orjson.loads(fields[EVENT_FIELD]) for _, fields in entries]
        return events

    async def total(self) -> int:
        return sum([await self.redis.xlen(events_stream(p)) for p in range(self.partitions)])


@pytest.fixture
def streams(redis: Client, settings: Settings) -> Streams:
    """The streams of the partition count every `make_settings()` here gets by default."""
    return Streams(redis, settings.partitions)


def problem(
    response: httpx.Response, status: int, locations: list[str] | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) == PROBLEM_KEYS and body["status"] == status
    assert body["instance"] == response.request.url.path
    if locations is not None:
        assert [e["location"] for e in body["errors"]] == locations
    return dict(body)


def event(**fields: Any) -> dict[str, Any]:
    base = {"event_type": "request", "command": "ask", "status": "start", "model": "m"}
    base.update(fields)
    return base


def run_event(**fields: Any) -> dict[str, Any]:
    base = {
        "type": "llm",
        "event": "start",
        "app": APP_ID,
        "runId": str(uuid.uuid4()),
        "name": "gpt-4o",
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    base.update(fields)
    return base


def count_events(body: Any) -> int:
    if isinstance(body, list):
        return len(body)
    return len(body["events"]) if "events" in body else 1


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


# --- every error row of CONTRACT §1 -----------------------------------------------------------
BAD_BATCH = {
    "batch": True,
    "events": [event(), event(timestamp="noon"), event(), event(status=7, model=["x"])],
}


@pytest.mark.parametrize(
    ("content", "status", "locations"),
    [
        (b"{not json", 400, ["body"]),
        (b"", 400, ["body"]),
        (b'"a string"', 400, ["body"]),
        (b"42", 400, ["body"]),
        (b'{"a": NaN}', 400, ["body"]),
        (b"\xff\xfe{}", 400, ["body"]),
        (b'{"batch": true}', 422, ["body.events"]),
        (b'{"batch": true, "events": {"event_type": "x"}}', 422, ["body.events"]),
        (
            orjson.dumps(BAD_BATCH),
            422,
            ["body.events[1].timestamp", "body.events[3].status", "body.events[3].model"],
        ),
        (orjson.dumps(event(command=None, metadata="x")), 422, ["body.command", "body.metadata"]),
        (orjson.dumps([event(), 3]), 422, ["body[1]"]),
    ],
)
async def test_webhook_error_rows(
    client: httpx.AsyncClient, streams: Streams, content: bytes, status: int, locations: list[str]
) -> None:
    response = await client.post(
        WATCHER_PATH, content=content, headers={"content-type": "application/json"}
    )
    problem(response, status, locations)
    assert await streams.total() == 0  # all-or-nothing: nothing from a refused request


@pytest.mark.parametrize("path", LLMONITOR_PATHS)
@pytest.mark.parametrize(
    ("content", "status", "locations"),
    [(b"[1, 2", 400, ["body"]), (b"true", 400, ["body"]), (b'{"events": 5}', 422, ["body.events"])],
)
async def test_llmonitor_error_rows(
    client: httpx.AsyncClient,
    streams: Streams,
    path: str,
    content: bytes,
    status: int,
    locations: list[str],
) -> None:
    problem(await client.post(path, content=content), status, locations)
    assert await streams.total() == 0


async def test_415_when_the_content_type_is_not_json(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    for path in (WATCHER_PATH, *LLMONITOR_PATHS):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await client.post(
                path, content=orjson.dumps(event()), headers={"content-type": content_type}
            )
            problem(response, 415)
    # no content type at all, or a +json type, is fine
    assert (await client.post(WATCHER_PATH, content=orjson.dumps(event()))).status_code == 200
    response = await client.post(
        WATCHER_PATH,
        content=orjson.dumps(event()),
        headers={"content-type": "application/vnd.x+json; charset=utf-8"},
    )
    assert response.status_code == 200
    assert await streams.total() == 2


async def test_413_body_and_batch_limits(
    make_settings: Callable[..., Settings], streams: Streams
) -> None:
    async with ingest(make_settings(max_body_bytes=2048, max_batch=3, apps=[APP_ID])) as client:
        big = event(metadata={"blob": "x" * 3000})
        problem(await client.post(WATCHER_PATH, json=big), 413)
        batch = {"batch": True, "events": [event() for _ in range(4)]}
        problem(await client.post(WATCHER_PATH, json=batch), 413)
        problem(await client.post(LLMONITOR_PATHS[0], json=[run_event() for _ in range(4)]), 413)
        assert (
            await client.post(WATCHER_PATH, json={**batch, "events": batch["events"][:3]})
        ).status_code == 200
    assert await streams.total() == 3


async def test_401_ingest_token(make_settings: Callable[..., Settings], streams: Streams) -> None:
    async with ingest(make_settings(ingest_token="s3cret", apps=[APP_ID])) as client:
        for path, body in [(WATCHER_PATH, event()), (LLMONITOR_PATHS[0], [run_event()])]:
            response = problem(await client.post(path, json=body), 401)
            assert "Bearer" in (await client.post(path, json=body)).headers["www-authenticate"]
            assert response["title"] == "Unauthorized"
            wrong = {"authorization": "Bearer nope"}
            problem(await client.post(path, json=body, headers=wrong), 401)
            right = {"authorization": "Bearer s3cret"}
            assert (await client.post(path, json=body, headers=right)).status_code == 200
        # with a token, the bearer is the token: an LLMonitor app id must be in the event
        response = await client.post(
            LLMONITOR_PATHS[0],
            json=[run_event(app=None)],
            headers={"authorization": "Bearer s3cret"},
        )
        assert response.status_code == 207
        assert response.json()["results"][0]["error"] == "body[0].app: field required"
    assert await streams.total() == 2


async def test_401_hmac_signature(make_settings: Callable[..., Settings], streams: Streams) -> None:
    async with ingest(make_settings(ingest_hmac_secret="k3y")) as client:
        body = orjson.dumps(event())
        problem(await client.post(WATCHER_PATH, content=body), 401)
        bad = {"x-signature-256": sign(body + b" ", "k3y")}
        problem(await client.post(WATCHER_PATH, content=body, headers=bad), 401)
        good = {"x-signature-256": sign(body, "k3y")}
        assert (await client.post(WATCHER_PATH, content=body, headers=good)).status_code == 200
    assert await streams.total() == 1


async def test_403_unregistered_app_rejects_the_whole_request(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    body = {"events": [run_event(), run_event(app="stranger"), run_event(timestamp="bad")]}
    for path in LLMONITOR_PATHS:
        response = await client.post(path, json=body)
        problem(response, 403, ["body.events[1].app"])
        assert response.json()["errors"][0]["value"] == "stranger"
        # an unregistered bearer app id is refused too
        response = await client.post(
            path, json=[run_event(app=None)], headers={"authorization": "Bearer who"}
        )
        problem(response, 403, ["header.Authorization"])
    assert await streams.total() == 0


async def test_207_publishes_the_valid_events_and_lists_the_others(
    client: httpx.AsyncClient, streams: Streams
) -> None:
    good1, good2 = run_event(), run_event(event="end", name=None)
    body = {"events": [good1, run_event(timestamp="later"), good2, "junk", run_event(runId=None)]}
    response = await client.post(LLMONITOR_PATHS[0], json=body)
    assert response.status_code == 207
    assert response.json()["results"] == [
        {"id": good1["runId"], "success": True},
        {
            "id": body["events"][1]["runId"],
            "success": False,
            "error": "body.events[1].timestamp: not an RFC 3339 timestamp",
        },
        {"id": good2["runId"], "success": True},
        {"id": None, "success": False, "error": "body.events[3]: expected an object, got string"},
        {"id": None, "success": False, "error": "body.events[4].runId: field required"},
    ]
    events = {e["metadata"]["runId"]: e for e in await streams.events()}
    assert set(events) == {good1["runId"], good2["runId"]}
    assert (events[good2["runId"]]["command"], events[good2["runId"]]["status"]) == (
        "llm",
        "completed",
    )


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


async def test_429_rate_limit_per_ip_and_per_app(
    make_settings: Callable[..., Settings], streams: Streams
) -> None:
    # limit 1/s: 4 quick requests cannot all fall into different one-second windows
    async with ingest(make_settings(rate_limit_per_ip=1, apps=[APP_ID])) as client:
        answers = [await client.post(WATCHER_PATH, json=event()) for _ in range(4)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and all(r.status_code in (200, 429) for r in answers)
    problem(limited[0], 429)
    assert int(limited[0].headers["retry-after"]) >= 1
    assert await streams.total() == 4 - len(limited)

    async with ingest(make_settings(rate_limit_per_app=1, apps=[APP_ID])) as client:
        answers = [await client.post(LLMONITOR_PATHS[0], json=[run_event()]) for _ in range(4)]
        assert any(r.status_code == 429 for r in answers)
        assert "retry-after" in next(r for r in answers if r.status_code == 429).headers


async def test_503_backpressure_when_the_backlog_is_over_its_cap(
    make_settings: Callable[..., Settings], redis: Client, streams: Streams
) -> None:
    settings = make_settings(stream_max_backlog=2)
    full = partition_for("held-up", settings.partitions)  # the partition of this session
    for _ in range(3):
        await redis.xadd(events_stream(full), {EVENT_FIELD: b"{}"})
    async with ingest(settings) as client:
        backlog = client.app.state.services["ingest"].state["backlog"]  # type: ignore[attr-defined]
        await backlog.refresh()  # what the sampler does every second
        response = await client.post(WATCHER_PATH, json=event(session_id="held-up"))
        problem(response, 503)
        assert response.headers["retry-after"] == "1"
        metrics = (await client.get("/metrics")).text
        assert (
            'llmwatch_ingest_events_rejected_total{reason="backpressure",source="webhook"} 1.0'
            in metrics
        )
        # only that partition is held up: a session elsewhere (if there is an elsewhere) goes on
        others = [f"s{i}" for i in range(50) if partition_for(f"s{i}", settings.partitions) != full]
        for session in others[:1]:
            response = await client.post(WATCHER_PATH, json=event(session_id=session))
            assert response.status_code == 200
    assert await streams.total() == 3 + min(1, len(others))


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
