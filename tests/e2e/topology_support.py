"""What the topology tests share: the local compose stack, the seed posts, small readers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from services.topology import Topology
from shared.redis_server import free_port
from shared.samples import all_samples
from tests.conftest import require_binary

WAIT_S = 30.0


def topology(
    tmp_path_factory: pytest.TempPathFactory,
    replicas: dict[str, int],
    *,
    prometheus: bool = False,
    **kwargs: Any,
) -> Iterator[Topology]:
    """Start the stack from deploy/ (nginx, optionally prometheus); stop it afterwards."""
    nginx = require_binary("nginx", "/usr/sbin/nginx")
    prom = require_binary("prometheus") if prometheus else None
    stack = Topology(
        run_dir=tmp_path_factory.mktemp("topology"),
        replicas=replicas,
        port=free_port(),
        prometheus_port=free_port() if prometheus else None,
        nginx_binary=nginx,
        prometheus_binary=prom,
        env={"LLMWATCH_LOG_LEVEL": "warning", "LLMWATCH_SAMPLE_INTERVAL_S": "1"},
        **kwargs,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class Posted:
    """What the seed posts put in: counts by source, and the ids the webhook samples carry."""

    events: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    webhook_ids: set[str] = field(default_factory=set)
    request_ids: list[str] = field(default_factory=list)


async def post_seed_samples(client: httpx.AsyncClient) -> Posted:
    """Register the demo app through the front door, then post every seed sample as-is."""
    created = await client.post("/api/apps", json={"name": "topology-demo"})
    assert created.status_code == 201, created.text
    posted = Posted()
    for path, body in all_samples(created.json()["id"]):
        response = await client.post(path, json=body)
        assert response.status_code == 200, (path, response.status_code, response.text)
        posted.request_ids.append(response.headers["x-request-id"])
        events = events_of(body)
        source = "webhook" if path == "/api/open-wrapper" else "llmonitor"
        posted.events += len(events)
        posted.by_source[source] = posted.by_source.get(source, 0) + len(events)
        if source == "webhook":
            posted.webhook_ids.update(e["id"] for e in events if "id" in e)
    return posted


def events_of(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):
        return body
    if "events" in body:
        return list(body["events"])
    return [body]


def counter(metrics_text: str, name: str) -> float:
    """Sum of every sample of one counter in a /metrics exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", re.MULTILINE)
    return sum(float(v) for v in pattern.findall(metrics_text))


async def sse_data(
    client: httpx.AsyncClient,
    path: str,
    count: int,
    *,
    event: str | None = None,
    connected: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """The JSON data of the first `count` messages named `event` (None: unnamed/`message`).
    Sets `connected` on the first message of any kind (e.g. the gateway's `ping`)."""
    found: list[dict[str, Any]] = []
    async with aconnect_sse(
        client, "GET", path, timeout=httpx.Timeout(WAIT_S, read=WAIT_S)
    ) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for message in source.aiter_sse():
            if connected is not None:
                connected.set()
            if (message.event or "message") == (event or "message"):
                found.append(orjson.loads(message.data))
                if len(found) >= count:
                    return found
    return found


async def poll(fetch: Any, done: Any, timeout: float = WAIT_S) -> Any:
    """Call `fetch()` until `done(value)`; the last value on timeout (the assertion shows it)."""
    value = None
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await fetch()
        if done(value):
            return value
        await asyncio.sleep(0.2)
    return value
