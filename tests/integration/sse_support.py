"""Helpers for the live-feed tests: apps on real ports, feed entries, SSE readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from httpx_sse import ServerSentEvent, aconnect_sse
from redis.asyncio import Redis

from services.targets import FACTORIES
from shared import cursor, keys
from shared.metrics import new_registry
from shared.redis import connect
from shared.service import Context, build_app
from shared.settings import Settings
from tests import loadgen
from tests.helpers import live_server

TIMEOUT = 10.0


def make_app(settings: Settings, *names: str) -> FastAPI:
    """An app with just these services (their own Redis client, closed on shutdown)."""
    ctx = Context(settings=settings, redis=connect(settings), registry=new_registry())
    return build_app(ctx, [FACTORIES[name](ctx) for name in names])


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, *names: str, port: int | None = None
) -> AsyncIterator[tuple[str, FastAPI]]:
    app = make_app(settings, *(names or ("stream",)))
    async with live_server(app, port) as base:
        yield base, app


def hub_of(app: FastAPI) -> Any:
    return app.state.services["stream"].state["hub"]


async def until(predicate: Any, timeout: float = TIMEOUT, every: float = 0.01) -> None:
    """Poll `predicate()` (sync or async) until true."""
    await loadgen.until(predicate, timeout, every)


async def add(redis: Redis, stream: str, name: str, payload: Any, **kw: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return await redis.xadd(stream, {keys.FEED_TYPE_FIELD: name, keys.FEED_DATA_FIELD: data}, **kw)


@dataclass
class Received:
    event: str
    data: str
    id: str

    @classmethod
    def of(cls, sse: ServerSentEvent) -> Received:
        return cls(sse.event, sse.data, sse.id)


class Feed:
    """An open SSE response; `next()` returns the next message (pings skipped unless asked)."""

    def __init__(self, source: Any) -> None:
        self.response = source.response
        self._it = source.aiter_sse()

    async def next(self, *, pings: bool = False, timeout: float = TIMEOUT) -> Received:
        while True:
            sse = await asyncio.wait_for(self._it.__anext__(), timeout)
            if pings or sse.event != "ping":
                return Received.of(sse)

    async def take(self, count: int, **kw: Any) -> list[Received]:
        return [await self.next(**kw) for _ in range(count)]


@contextlib.asynccontextmanager
async def feed(client: httpx.AsyncClient, path: str, **kw: Any) -> AsyncIterator[Feed]:
    async with aconnect_sse(client, "GET", path, **kw) as source:
        source.response.raise_for_status()
        yield Feed(source)


def vector_of(received: Received) -> cursor.Vector:
    return cursor.decode(received.id).vector


def assert_ids_move_forward(got: list[Received], start: str | None = None) -> None:
    """Along one connection every id moves some stream forward and none backwards."""
    previous = cursor.decode(start).vector if start else None
    for r in got:
        vector = vector_of(r)
        if previous is not None:
            assert vector != previous and all(
                a <= b for a, b in zip(previous, vector, strict=True)
            ), (previous, vector)
        previous = vector


async def assert_nothing_more(stream: Feed, redis: Redis, mark: int = 0) -> None:
    """Nothing was left to come: the next message is an entry written now."""
    payload = {"sentinel": mark}
    await add(redis, keys.SYSTEM_FEED, "system", payload)
    nxt = await stream.next()
    assert (nxt.event, orjson.loads(nxt.data)) == ("system", payload)
