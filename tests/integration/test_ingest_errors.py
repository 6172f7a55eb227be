"""Every error row of CONTRACT §1 on the write routes, against a real Redis (single and
cluster): each answers as documented (problem+json, status, locations) and a refused request
publishes nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from services.ingest.auth import sign
from shared.keys import EVENT_FIELD, events_stream, partition_for
from shared.redis import Client
from shared.samples import LLMONITOR_PATHS, WATCHER_PATH
from shared.settings import Settings
from tests import ingest_support
from tests.ingest_support import (
    APP_ID,
    Streams,
    event,
    ingest,
    problem,
    run_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

client, streams = ingest_support.client, ingest_support.streams  # the fixtures, by name

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
