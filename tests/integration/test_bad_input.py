"""Crafted bodies against the write routes, and header injection against the SSE framing:
invalid UTF-8, deep nesting, huge numbers and strings, duplicate keys, NaN/Infinity, wrong
content types, CR/LF in event fields, feed names and cursors. Never a 5xx; what is refused is
refused whole, as problem+json; what is accepted reads back intact (README, Guarantees: limits)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from redis.asyncio import Redis

from services.ingest.normalize import MAX_DEPTH, TooDeep, encode_event
from services.targets import FACTORIES
from shared import keys
from shared.metrics import new_registry
from shared.redis import connect
from shared.service import Context, build_app
from shared.settings import Settings
from tests.helpers import app_client, live_server
from tests.loadgen import until

pytestmark = pytest.mark.integration

APP = "bad-input-app"
WEBHOOK = "/api/open-wrapper"
LLMONITOR = "/v1/runs/ingest"
EVENT = {"event_type": "request", "command": "ask", "status": "start"}
RUN = {"type": "llm", "event": "start", "app": APP, "runId": "r1",
       "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(apps=[APP], max_body_bytes=8 * 2**20)
    ctx = Context(settings=settings, redis=connect(settings), registry=new_registry())
    services = [FACTORIES[name](ctx) for name in ("ingest", "stream")]
    async with app_client(build_app(ctx, services)) as test_client:
        yield test_client


def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = orjson.loads(response.content)
    assert problem["status"] == status
    return problem


async def published(redis: Redis) -> int:
    return int(await redis.xlen(keys.events_stream(0)))


async def post(client: httpx.AsyncClient, path: str, body: bytes, **headers: str) -> httpx.Response:
    return await client.post(path, content=body, headers={"content-type": "application/json",
                                                          **headers})  # fmt: skip


@pytest.mark.parametrize("path", [WEBHOOK, LLMONITOR])
@pytest.mark.parametrize(
    "body",
    [
        b'{"event_type": "request\xff\xfe", "command": "a", "status": "start"}',  # bad UTF-8
        b'{"event_type": "request", "command": "\\ud800", "status": "start"}',  # lone surrogate
        b'{"event_type": "request", "command": "a", "status": "start", "x": NaN}',
        b'{"event_type": "request", "command": "a", "status": "start", "x": Infinity}',
        b'{"event_type": "request", "command": "a", "status": "start", "x": -Infinity}',
        b'{"event_type": "request", "command": "a", "status": "start", "x": 1e999}',
        b'{"event_type": "request", "command": "a", "status": "start", "x": ' + b"9" * 400 + b"}",
        b'{"event_type": "request", "command": "a", "status": "start",}',  # trailing comma
        b"\xef\xbb\xbf" + orjson.dumps(EVENT),  # a byte-order mark
        nested(1100),  # deeper than the parser goes
        b"",
        b"null",
        b'"event"',
    ],
    ids=[
        "utf8",
        "surrogate",
        "nan",
        "inf",
        "-inf",
        "1e999",
        "bigint",
        "comma",
        "bom",
        "deep",
        "empty",
        "null",
        "string",
    ],
)
async def test_not_json_or_not_an_envelope_is_400(
    client: httpx.AsyncClient, redis: Redis, path: str, body: bytes
) -> None:
    refused(await post(client, path, body), 400)
    assert await published(redis) == 0


def with_deep(body: dict[str, Any] | list[Any], depth: int) -> bytes:
    """`body` with its `"DEEP"` string replaced by arrays nested `depth` levels (raw bytes: no
    encoder writes what is past its own limit)."""
    return orjson.dumps(body).replace(b'"DEEP"', nested(depth))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (WEBHOOK, with_deep({**EVENT, "metadata": {"deep": "DEEP"}}, 1000)),
        (WEBHOOK, nested(1000)),  # a batch whose event is an array, 1000 deep
        (WEBHOOK, with_deep({**EVENT, "metadata": {"deep": "DEEP"}}, 300)),
        (WEBHOOK, with_deep({"events": [EVENT, {**EVENT, "x": "DEEP"}]}, 70)),
        (LLMONITOR, with_deep([{**RUN, "input": "DEEP"}], 1000)),
        (LLMONITOR, with_deep([RUN, {**RUN, "runId": "r2", "output": "DEEP"}], 200)),
    ],
    ids=["metadata-1000", "top-1000", "metadata-300", "batch-70", "input-1000", "output-200"],
)
async def test_deep_nesting_is_refused_whole_never_a_5xx(
    client: httpx.AsyncClient, redis: Redis, path: str, body: bytes
) -> None:
    problem = refused(await post(client, path, body), 422)
    assert problem["errors"] and all(e["location"].startswith("body") for e in problem["errors"])
    assert await published(redis) == 0


async def test_nesting_of_real_payloads_is_fine(client: httpx.AsyncClient, redis: Redis) -> None:
    deep = orjson.loads(nested(60))  # e.g. a JSON Schema of a tool, messages in messages
    response = await post(client, LLMONITOR, orjson.dumps([{**RUN, "input": deep}]))
    assert response.status_code == 200, response.text
    response = await post(client, WEBHOOK, orjson.dumps({**EVENT, "metadata": {"d": deep}}))
    assert response.status_code == 200, response.text
    assert await published(redis) == 2


async def test_the_deepest_accepted_event_goes_through_the_whole_pipeline(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(apps=[APP])
    ctx = Context(settings=settings, redis=connect(settings), registry=new_registry())
    services = [FACTORIES[name](ctx) for name in ("ingest", "aggregator", "stream")]
    deepest = orjson.loads(nested(MAX_DEPTH - 2))  # event > metadata > value: MAX_DEPTH levels
    run = {**RUN, "input": deepest, "output": deepest, "name": "gpt-4o"}
    async with app_client(build_app(ctx, services)) as client:
        accepted = [
            await client.post(
                WEBHOOK, json={**EVENT, "session_id": "s", "metadata": {"d": deepest}}
            ),
            await client.post(LLMONITOR, json=[run, {**run, "event": "end"}]),
        ]
        assert [r.status_code for r in accepted] == [200, 200], accepted[-1].text

        async def applied() -> bool:
            return (await client.get("/api/stats")).json()["total"] == 3

        await until(applied, timeout=10, every=0.02)
        for path in ("/api/history", "/api/runs/r1", "/api/runs/s", "/api/deadletter"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/api/runs/r1")).json()["input"] == deepest
        assert (await client.get("/api/deadletter")).json()["items"] == []
    assert ctx.registry.get_sample_value("llmwatch_aggregator_events_failed_total") in (0, None)


async def test_huge_numbers_and_strings_are_kept_intact(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    text = "λ" * (2 * 2**20)  # 4 MiB of UTF-8, under the 8 MiB limit of this app
    numbers = {"big": 18446744073709551616, "neg": -9223372036854775809, "tiny": 5e-324,
               "max": 1.7976931348623157e308, "exp": 1e308}  # fmt: skip
    body = {**EVENT, "id": "huge", "metadata": {"text": text, **numbers}}
    assert (
        await post(client, WEBHOOK, json.dumps(body, ensure_ascii=False).encode())
    ).status_code == 200
    ((_, fields),) = await redis.xrange(keys.events_stream(0))
    stored = orjson.loads(fields[keys.EVENT_FIELD])
    assert stored["metadata"]["text"] == text
    assert stored["metadata"]["big"] == pytest.approx(1.8446744073709552e19)  # a JSON number
    assert stored["metadata"]["tiny"] == 5e-324 and stored["metadata"]["exp"] == 1e308
    too_long = orjson.dumps({**EVENT, "metadata": {"text": "x" * (8 * 2**20)}})
    refused(await post(client, WEBHOOK, too_long), 413)
    assert await published(redis) == 1


async def test_duplicate_keys_last_one_wins_once(client: httpx.AsyncClient, redis: Redis) -> None:
    body = (b'{"id": "dup", "id": "dup2", "event_type": "request", "command": "a",'
            b' "status": "start", "status": "failed", "metadata": {"k": 1, "k": 2}}')  # fmt: skip
    assert (await post(client, WEBHOOK, body)).status_code == 200
    ((_, fields),) = await redis.xrange(keys.events_stream(0))
    stored = orjson.loads(fields[keys.EVENT_FIELD])
    assert (stored["id"], stored["status"], stored["metadata"]) == ("dup2", "failed", {"k": 2})


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/xml", 415),
        ("text/json", 415),
        ("application/json; charset=utf-8", 200),
        ("APPLICATION/JSON", 200),
        ("application/vnd.llmwatch+json", 200),
    ],
)
async def test_content_types(
    client: httpx.AsyncClient, redis: Redis, content_type: str, status: int
) -> None:
    for path, body in ((WEBHOOK, EVENT), (LLMONITOR, [RUN])):
        response = await client.post(
            path, content=orjson.dumps(body), headers={"content-type": content_type}
        )
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            refused(response, status)
    assert await published(redis) == (2 if status == 200 else 0)


# --- SSE framing: client data never becomes SSE fields ----------------------------------------
INJECTIONS = {
    "id": "evil\r\nid: 1\r\n\r\ndata: forged",
    "event_type": "request\nevent: run.failed\n\ndata: {}",
    "command": "ask\rdata: forged\r\r",
    "status": "start\r\n\r\n",
    "model": "m\u2028\u0085\x00",
    "metadata": {"a\nb": "c\r\nd", "event: x\n": "\n\n"},
}


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[str, Redis]]:
    redis = connect(settings)
    ctx = Context(settings=settings, redis=connect(settings), registry=new_registry())
    services = [FACTORIES[name](ctx) for name in ("ingest", "aggregator", "stream")]
    try:
        async with live_server(build_app(ctx, services)) as base:
            yield base, redis
    finally:
        await redis.aclose()


async def test_cr_lf_in_event_fields_never_break_the_sse_framing(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        gateway(make_settings()) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        aconnect_sse(client, "GET", "/api/stream?events=event") as named,
        aconnect_sse(client, "GET", "/api/events") as plain,
        client.stream("GET", "/api/stream?events=event") as raw,
    ):
        frames, events = named.aiter_sse(), plain.aiter_sse()
        assert (await anext(frames)).event == "ping"
        lines = raw.aiter_lines()
        assert [await anext(lines) for _ in range(3)] == ["event: ping", "data: {}", ""]
        assert (await client.post(WEBHOOK, json=INJECTIONS)).status_code == 200
        assert (await client.post(WEBHOOK, json={**EVENT, "id": "after"})).status_code == 200
        received = [await anext(frames) for _ in range(2)]
        unnamed = [await anext(events) for _ in range(2)]
        wire: list[str] = []
        while len([line for line in wire if line.startswith("data:")]) < 2:
            wire.append(await anext(lines))
    for message in received:
        assert message.event == "event"
    assert [m.event for m in unnamed] == ["message", "message"]  # unnamed: onmessage
    stored = orjson.loads(received[0].data)
    assert stored == orjson.loads(unnamed[0].data)
    assert {k: stored[k] for k in ("id", "command", "model", "metadata")} == {
        k: INJECTIONS[k] for k in ("id", "command", "model", "metadata")}  # fmt: skip
    assert orjson.loads(received[1].data)["id"] == "after"
    # on the wire: only our own field names, one data line per message, ids are our cursors
    fields = [line.split(":", 1)[0] for line in wire if line]
    assert set(fields) <= {"id", "event", "data"}, wire
    ids = [line for line in wire if line.startswith("id:")]
    assert all("evil" not in line and "forged" not in line for line in ids)


async def test_unsafe_feed_names_and_cursors_are_not_echoed(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        gateway(make_settings()) as (base, redis),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        async with client.stream("GET", "/api/stream") as response:
            lines = response.aiter_lines()
            assert [await anext(lines) for _ in range(3)] == ["event: ping", "data: {}", ""]
            feed = keys.feed_stream(0)
            for name in (b"run.created\r\nevent: forged", b"x\ndata: forged", b"A B", b""):
                await redis.xadd(feed, {keys.FEED_TYPE_FIELD: name, keys.FEED_DATA_FIELD: b"{}"})
            await redis.xadd(feed, {keys.FEED_TYPE_FIELD: b"run.created",
                                    keys.FEED_DATA_FIELD: b'{"ok": "\\r\\n"}'})  # fmt: skip
            wire = [await anext(lines) for _ in range(3)]
        assert wire[1] == "event: run.created", wire  # the unsafe entries were skipped
        assert wire[2] == 'data: {"ok": "\\r\\n"}'
        assert "forged" not in "".join(wire)
        # a filter naming a header is refused; a cursor carrying one is never echoed
        refused(await client.get("/api/stream", params={"events": "run.created\r\nx: y"}), 422)
        async with client.stream(
            "GET", "/api/stream", params={"lastEventId": "1x.1.2\r\nevent: forged"}
        ) as response:
            lines = response.aiter_lines()
            head = [await anext(lines) for _ in range(5)]
    assert "event: reset" in head and "forged" not in "".join(head)


@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 254, 255, 2000])
def test_the_depth_limit_is_exact(depth: int) -> None:
    event: Any = {}
    for _ in range(depth - 1):
        event = {"k": event}
    if depth <= MAX_DEPTH:
        assert orjson.loads(encode_event(event)) == event
    else:
        with pytest.raises(TooDeep):
            encode_event(event)
    flat = {"many": [{"a": [1]} for _ in range(200)], "text": "[[[[{{{{" * 50}  # brackets, shallow
    assert orjson.loads(encode_event(flat)) == flat
