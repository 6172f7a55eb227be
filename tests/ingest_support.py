"""Helpers for the ingest route tests: the app with its lifespan, the streams read back, and
request bodies."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from services.targets import create_app
from shared.keys import EVENT_FIELD, events_stream
from shared.redis import Client
from shared.settings import Settings
from tests.helpers import app_client

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
