"""The compose topology, run locally from the same deploy/ files: nginx on one port in front of
three ingest replicas, an aggregator, the stream gateway and the metrics sampler, on one Redis."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import cli
from services.topology import Topology
from shared.samples import all_samples
from tests.e2e.topology_support import (
    WAIT_S,
    counter,
    events_of,
    poll,
    post_seed_samples,
    sse_data,
    topology,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED_EVENTS = sum(len(events_of(body)) for _, body in all_samples())
LOAD_MODEL = "topology-load"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    yield from topology(tmp_path_factory, {"ingest": 3, "aggregator": 1, "stream": 1, "metrics": 1})


async def test_seed_samples_spread_over_ingest_replicas_come_back_on_every_read_route(
    stack: Topology,
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=WAIT_S) as client:
        connected = asyncio.Event()
        live = asyncio.create_task(
            sse_data(client, "/api/stream", SEED_EVENTS, event="event", connected=connected)
        )
        # The gateway's `ping` on connect gets through at once: nginx does not buffer SSE.
        await asyncio.wait_for(connected.wait(), WAIT_S)
        posted = await post_seed_samples(client)
        assert posted.events == SEED_EVENTS
        streamed = await asyncio.wait_for(live, WAIT_S)

        snapshot = await asyncio.wait_for(
            sse_data(client, f"/api/events?snapshot={SEED_EVENTS}", SEED_EVENTS), WAIT_S
        )
        stats = await poll(lambda: _json(client, "/api/stats"), lambda s: s["total"] >= SEED_EVENTS)

    for events in (streamed, snapshot):
        assert len(events) == SEED_EVENTS
        assert Counter(e["source"] for e in events) == posted.by_source
        assert posted.webhook_ids <= {e["id"] for e in events}
        assert len({e["id"] for e in events}) == SEED_EVENTS
    assert stats["total"] == SEED_EVENTS
    assert stats["by_source"] == posted.by_source

    # nginx spread the posts: every replica accepted some, together exactly what was posted.
    async with httpx.AsyncClient(timeout=5) as direct:
        pages = [(await direct.get(p.url + "/metrics")).text for p in stack.of("ingest")]
    accepted = [counter(page, "llmwatch_ingest_events_accepted_total") for page in pages]
    assert all(n > 0 for n in accepted), accepted
    assert sum(accepted) == SEED_EVENTS


async def test_routes_reach_the_service_that_owns_them(stack: Topology) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=WAIT_S) as client:
        apps = await client.get("/api/apps")  # ingest
        assert apps.status_code == 200 and "items" in apps.json()
        reload = await client.post("/api/reload")  # only the metrics sampler serves it
        assert reload.status_code == 200 and reload.json()["reloaded"] is True, reload.text
        read_all = await client.post("/api/notifications/read")  # stream gateway
        assert read_all.status_code == 204
        unread = await client.get("/api/notifications/unread-count")
        assert unread.status_code == 200 and unread.json()["count"] == 0
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

        echoed = await client.get("/api/stats", headers={"X-Request-Id": "topology-test-1"})
        assert echoed.headers["x-request-id"] == "topology-test-1"
        minted = await client.get("/api/stats")
        assert len(minted.headers["x-request-id"]) == 32

        too_big = await client.post(
            "/api/open-wrapper", content=b" " * (5 * 1024 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"
        assert too_big.json()["status"] == 413


async def test_stopping_ingest_replicas_under_load_loses_no_acknowledged_event(
    stack: Topology,
) -> None:
    """Two of three ingest replicas go away mid-load (SIGTERM as `docker compose stop`, then
    SIGKILL as a crash). Clients see only 2xx or a retryable 502/503; retrying with the same id
    gets every event acknowledged, and every acknowledged event is counted exactly once."""
    acked: set[str] = set()
    statuses: Counter[int] = Counter()
    failures: list[Any] = []
    stop = asyncio.Event()

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            event = {"id": str(uuid.uuid4()), "event_type": "request", "command": "load",
                     "status": "start", "model": LOAD_MODEL, "metadata": {}}  # fmt: skip
            for _ in range(100):
                try:
                    response = await client.post("/api/open-wrapper", json=event)
                except httpx.HTTPError as exc:  # nginx itself never goes away here
                    failures.append(repr(exc))
                    return
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    acked.add(event["id"])
                    break
                if response.status_code not in (502, 503):
                    failures.append((response.status_code, response.text))
                    return
                await asyncio.sleep(0.05)
            else:
                failures.append(("never acknowledged", event["id"]))

    async def acknowledged(more: int) -> None:
        target = len(acked) + more
        while len(acked) < target and not failures:
            await asyncio.sleep(0.01)

    replicas = stack.of("ingest")
    async with httpx.AsyncClient(base_url=stack.url, timeout=WAIT_S) as client:
        before = (await client.get("/api/stats")).json()["total"]
        clients = [asyncio.create_task(client_loop(client)) for _ in range(8)]
        await asyncio.wait_for(acknowledged(200), WAIT_S)
        await asyncio.to_thread(replicas[0].stop, signal.SIGTERM)
        await asyncio.wait_for(acknowledged(200), WAIT_S)
        await asyncio.to_thread(replicas[1].stop, signal.SIGKILL)
        await asyncio.wait_for(acknowledged(200), WAIT_S)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), WAIT_S)

        assert not failures, failures[:5]
        assert set(statuses) <= {200, 502, 503}, statuses
        assert replicas[2].alive() and not replicas[0].alive() and not replicas[1].alive()

        stats = await poll(lambda: _json(client, "/api/stats"),
                           lambda s: s["total"] - before >= len(acked))  # fmt: skip
        assert stats["total"] - before == len(acked)  # retried events are counted once
        seen = await _history_ids(client, model=LOAD_MODEL)
    assert acked <= seen, f"{len(acked - seen)} acknowledged events missing from history"


async def _json(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    response.raise_for_status()
    return response.json()


async def _history_ids(client: httpx.AsyncClient, **filters: str) -> set[str]:
    ids: set[str] = set()
    params: dict[str, Any] = {"limit": 5000, **filters}
    while True:
        page = (await client.get("/api/history", params=params)).json()
        ids.update(item["id"] for item in page["items"])
        if not page.get("next_cursor"):
            return ids
        params["before"] = page["next_cursor"]


def test_cli_refuses_a_topology_without_some_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["topology", "--ingest", "0", "--run-dir", str(tmp_path)]) == 1
    assert "at least one replica" in capsys.readouterr().err
