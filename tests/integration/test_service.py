"""The app factory: ops routes, aggregated readiness, supervision of background tasks."""

import asyncio

import pytest
from fastapi import APIRouter

from shared import metrics as shared_metrics
from shared.redis import connect
from shared.service import Context, Service, build_app
from tests.helpers import app_client

pytestmark = pytest.mark.integration


def _ctx(settings):
    return Context(
        settings=settings, redis=connect(settings), registry=shared_metrics.new_registry()
    )


async def test_ops_routes_and_problem_404(settings) -> None:
    app = build_app(_ctx(settings), [Service(name="x")])
    async with app_client(app) as client:
        assert (await client.get("/healthz")).json()["services"] == ["x"]
        assert (await client.get("/readyz")).status_code == 200
        metrics = await client.get("/metrics")
        assert "llmwatch_http_request_duration_seconds" in metrics.text
        missing = await client.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


async def test_readyz_reports_each_failing_service(settings) -> None:
    async def not_ready() -> str | None:
        return "group missing"

    app = build_app(_ctx(settings), [Service(name="a"), Service(name="b", ready=not_ready)])
    async with app_client(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"a": "ok", "b": "group missing"}


async def test_dead_background_task_is_fatal(settings) -> None:
    died: list[str] = []

    async def crash() -> None:
        raise RuntimeError("boom")

    app = build_app(
        _ctx(settings),
        [Service(name="w", tasks=[crash])],
        on_fatal=lambda name, exc: died.append(name),
    )
    async with app_client(app):
        for _ in range(100):
            if died:
                break
            await asyncio.sleep(0.01)
    assert died == ["w:crash"]


async def test_loops_stop_on_shutdown(settings) -> None:
    ctx = _ctx(settings)
    stopped = asyncio.Event()

    async def loop() -> None:
        await ctx.stopping.wait()
        stopped.set()

    router = APIRouter()
    app = build_app(ctx, [Service(name="w", tasks=[loop], routers=[router])])
    async with app_client(app):
        pass
    assert stopped.is_set()


async def test_redis_down_is_503_not_500(make_settings) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    router = APIRouter()
    ctx = _ctx(settings)

    @router.get("/touch")
    async def touch() -> dict[str, bool]:
        await ctx.redis.get("x")
        return {"ok": True}

    app = build_app(ctx, [Service(name="t", routers=[router])])
    async with app_client(app) as client:
        response = await client.get("/touch")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
