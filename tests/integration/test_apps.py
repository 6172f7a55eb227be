"""The LLMonitor app registry: Redis functions, the per-process cache, LLMWATCH_APPS at start,
and POST/GET /api/apps behind the admin token."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from services import cli
from services.ingest import apps
from services.targets import create_app
from shared.settings import Settings
from tests.helpers import app_client

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


async def test_add_and_list(redis: Redis) -> None:
    first = await apps.add_app(redis, "one")
    second = await apps.add_app(redis, "two")
    assert uuid.UUID(first["id"]) and first["name"] == "one" and first["created_at"].endswith("Z")
    assert [a["id"] for a in await apps.list_apps(redis)] == [first["id"], second["id"]]
    assert await apps.ensure_app(redis, "fixed-id") is True
    assert await apps.ensure_app(redis, "fixed-id", "renamed") is False  # never overwritten
    assert {a["name"] for a in await apps.list_apps(redis)} == {"one", "two", "fixed-id"}


async def test_registry_asks_redis_once_then_caches(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = apps.AppRegistry(redis, ["pinned"], timeout_s=1)
    app = await apps.add_app(redis, "x")
    assert await registry.unregistered({app["id"], "pinned", "nope"}) == ["nope"]
    await redis.delete(apps.APPS)  # the cache answers now, not Redis
    assert await registry.is_registered(app["id"])
    assert not await registry.is_registered("nope")
    # a "no" is remembered only briefly, so `llmwatch apps add` takes effect at once
    monkeypatch.setattr(apps, "NEGATIVE_TTL_S", 0.0)
    registry = apps.AppRegistry(redis, [], timeout_s=1)
    assert not await registry.is_registered("late")
    await apps.ensure_app(redis, "late")
    assert await registry.is_registered("late")


async def test_configured_apps_are_registered_at_start(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    app = create_app(make_settings(apps=["env-app-1", "env-app-2"]), "ingest")
    async with app_client(app):
        for _ in range(200):
            if len(await apps.list_apps(redis)) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(a["id"] for a in await apps.list_apps(redis)) == ["env-app-1", "env-app-2"]


async def test_http_routes_open_without_admin_token(make_settings: Callable[..., Settings]) -> None:
    async with app_client(create_app(make_settings(), "ingest")) as client:
        created = await client.post("/api/apps", json={"name": "  demo  "})
        assert created.status_code == 201
        body = created.json()
        assert set(body) == {"id", "name", "created_at"} and body["name"] == "demo"
        assert (await client.get("/api/apps")).json() == {"items": [body]}
        # the new id is usable at once by this process
        run = {"type": "llm", "event": "start", "app": body["id"], "runId": "r", "timestamp": 0}
        assert (await client.post("/v1/runs/ingest", json=[run])).status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "location"),
    [
        ({}, 422, "body.name"),
        ({"name": 5}, 422, "body.name"),
        ({"name": " "}, 422, "body.name"),
        ({"name": "x" * 201}, 422, "body.name"),
        ([], 422, "body.name"),
    ],
)
async def test_bad_app_bodies(
    make_settings: Callable[..., Settings], payload: object, status: int, location: str
) -> None:
    async with app_client(create_app(make_settings(), "ingest")) as client:
        response = await client.post("/api/apps", json=payload)
        assert response.status_code == status
        assert [e["location"] for e in response.json()["errors"]] == [location]
        assert (await client.post("/api/apps", content=b"{x")).status_code == 400
        assert (
            await client.post("/api/apps", content=b"{}", headers={"content-type": "text/plain"})
        ).status_code == 415


async def test_admin_token_guards_both_routes(make_settings: Callable[..., Settings]) -> None:
    async with app_client(create_app(make_settings(admin_token="adm"), "ingest")) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            assert (
                await client.post("/api/apps", json={"name": "a"}, headers=headers)
            ).status_code == 401
            listing = await client.get("/api/apps", headers=headers)
            assert listing.status_code == 401
            assert listing.headers["content-type"].startswith("application/problem+json")
        ok = {"authorization": "Bearer adm"}
        assert (await client.post("/api/apps", json={"name": "a"}, headers=ok)).status_code == 201
        assert len((await client.get("/api/apps", headers=ok)).json()["items"]) == 1


def test_cli_apps_add_and_list(clean_redis: str, capsys: pytest.CaptureFixture[str]) -> None:
    # `llmwatch apps add|list` on the URL given: a single Redis or `redis+cluster://`.
    assert cli.main(["apps", "add", "cli-app", "--redis-url", clean_redis]) == 0
    app_id = capsys.readouterr().out.strip()
    assert uuid.UUID(app_id)
    assert cli.main(["apps", "list", "--redis-url", clean_redis]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split("\t")[:2] == [app_id, "cli-app"]
