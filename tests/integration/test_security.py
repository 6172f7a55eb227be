"""Who may do what (README, Guarantees: security): the ingest token and HMAC signature on the
write routes, the admin token on apps, dead letters and reload, the optional read token on every
read route and feed (bearer, or `?token=` for EventSource); tokens compared in constant time;
rate limits shared by ingest replicas through Redis; CORS only where configured."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from services.ingest.auth import sign
from services.targets import create_app
from shared.settings import Settings, production_gaps
from tests.helpers import app_client, live_server, wait_ready

pytestmark = pytest.mark.integration

INGEST = "ingest-token-0123456789"
ADMIN = "admin-token-0123456789"
READ = "read-token-0123456789"
SECRET = "hmac-secret-0123456789"
APP = "sec-app"
EVENT = {"event_type": "request", "command": "ask", "status": "start"}
RUN = {"type": "llm", "event": "start", "app": APP, "runId": "r1",
       "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
WRITES = [("/api/open-wrapper", EVENT), ("/v1/runs/ingest", [RUN]), ("/api/report", [RUN])]
READS = [
    ("GET", "/api/history"), ("GET", "/api/stats"), ("GET", "/api/runs"),
    ("GET", "/api/notifications"), ("GET", "/api/notifications/unread-count"),
    ("POST", "/api/notifications/read"), ("GET", "/api/system"),
    ("GET", "/api/system/history"), ("GET", "/api/info"),
]  # fmt: skip
ADMINS = [("GET", "/api/apps"), ("POST", "/api/apps"), ("GET", "/api/deadletter"),
          ("POST", "/api/reload")]  # fmt: skip


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].lower().startswith("bearer")


@pytest.fixture
async def locked(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(ingest_token=INGEST, admin_token=ADMIN, read_token=READ,
                             apps=[APP])  # fmt: skip
    async with app_client(create_app(settings, "all")) as client:
        yield client


async def call(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
    if method == "POST" and path == "/api/apps":
        kw.setdefault("json", {"name": "x"})
    return await client.request(method, path, **kw)


async def test_write_routes_take_only_the_ingest_token(locked: httpx.AsyncClient) -> None:
    for path, body in WRITES:
        for headers in (
            {},
            bearer("wrong"),
            bearer(ADMIN),
            bearer(READ),
            bearer(INGEST + "x"),
            {"authorization": f"Basic {INGEST}"},
            {"authorization": INGEST},
        ):
            unauthorized(await locked.post(path, json=body, headers=headers))
        unauthorized(await locked.post(path, json=body, params={"token": INGEST}))  # no URLs
        assert (await locked.post(path, json=body, headers=bearer(INGEST))).status_code == 200
        lower = {"authorization": f"bearer {INGEST}"}  # the scheme is case-insensitive
        assert (await locked.post(path, json=body, headers=lower)).status_code == 200


async def test_admin_routes_take_only_the_admin_token(locked: httpx.AsyncClient) -> None:
    for method, path in ADMINS:
        for kw in ({}, {"headers": bearer("wrong")}, {"headers": bearer(READ)},
                   {"headers": bearer(INGEST)}, {"params": {"token": ADMIN}}):  # fmt: skip
            unauthorized(await call(locked, method, path, **kw))
        response = await call(locked, method, path, headers=bearer(ADMIN))
        assert response.status_code in (200, 201), (path, response.text)


async def test_read_routes_take_the_read_token_as_bearer_or_query(
    locked: httpx.AsyncClient,
) -> None:
    for method, path in [*READS, ("GET", "/api/runs/nope")]:
        for kw in ({}, {"headers": bearer("wrong")}, {"headers": bearer(INGEST)},
                   {"params": {"token": "wrong"}}):  # fmt: skip
            unauthorized(await call(locked, method, path, **kw))
        for kw in ({"headers": bearer(READ)}, {"params": {"token": READ}},
                   {"headers": bearer(ADMIN)}):  # fmt: skip
            response = await call(locked, method, path, **kw)
            expected = 404 if path == "/api/runs/nope" else None  # past the check: not found
            assert response.status_code == expected or response.status_code < 300, response.text
    for path in ("/api/events", "/api/stream"):  # the feeds refuse before streaming
        unauthorized(await locked.get(path))
        unauthorized(await locked.get(path, params={"token": INGEST}))


async def test_probes_and_the_page_stay_open(locked: httpx.AsyncClient) -> None:
    ready = await wait_ready(locked)  # the feed reader and consumer group start with the app
    assert ready.status_code == 200, ready.text
    for path in ("/healthz", "/readyz", "/metrics", "/"):
        assert (await locked.get(path)).status_code == 200, path


async def test_feeds_take_the_read_token_in_the_url_for_eventsource(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(read_token=READ), "stream")
    async with live_server(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        for path in ("/api/events", "/api/stream"):
            for kw in ({"params": {"token": READ}}, {"headers": bearer(READ)}):
                async with client.stream("GET", path, **kw) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    assert b"ping" in await anext(response.aiter_raw())


async def test_admin_routes_fall_back_to_the_read_token_without_an_admin_token(
    make_settings: Callable[..., Settings],
) -> None:
    async with app_client(create_app(make_settings(read_token=READ), "all")) as client:
        for path in ("/api/deadletter", "/api/reload"):
            method = "GET" if path == "/api/deadletter" else "POST"
            unauthorized(await client.request(method, path))
            ok = await client.request(method, path, headers=bearer(READ))
            assert ok.status_code == 200, ok.text


async def test_hmac_signature_with_and_alongside_the_token(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(ingest_token=INGEST, ingest_hmac_secret=SECRET, apps=[APP])
    async with app_client(create_app(settings, "ingest")) as client:
        for path, body in WRITES:
            raw = orjson.dumps(body)
            good = {**bearer(INGEST), "x-signature-256": sign(raw, SECRET),
                    "content-type": "application/json"}  # fmt: skip
            assert (await client.post(path, content=raw, headers=good)).status_code == 200
            upper = {**good, "x-signature-256": "sha256=" + sign(raw, SECRET)[7:].upper()}
            assert (await client.post(path, content=raw, headers=upper)).status_code == 200
            for signature in (None, "", sign(raw + b" ", SECRET), sign(raw, "other"),
                              sign(raw, SECRET)[7:], "sha1=" + sign(raw, SECRET)[7:],
                              sign(raw, SECRET) + "00", "sha256=zz"):  # fmt: skip
                headers = {k: v for k, v in good.items() if k != "x-signature-256"}
                if signature is not None:
                    headers["x-signature-256"] = signature
                unauthorized(await client.post(path, content=raw, headers=headers))
            no_token = {k: v for k, v in good.items() if k != "authorization"}
            unauthorized(await client.post(path, content=raw, headers=no_token))


async def test_every_token_is_compared_in_constant_time(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    settings = make_settings(ingest_token=INGEST, ingest_hmac_secret=SECRET, admin_token=ADMIN,
                             read_token=READ, apps=[APP])  # fmt: skip
    async with app_client(create_app(settings, "all")) as client:
        checks = [
            (lambda: client.post("/api/open-wrapper", json=EVENT, headers=bearer("x")), INGEST),
            (lambda: client.post("/api/open-wrapper", json=EVENT, headers={
                **bearer(INGEST), "x-signature-256": "sha256=" + "0" * 64}), "sha256="),
            (lambda: client.get("/api/apps", headers=bearer("a-much-longer-wrong-token")), ADMIN),
            (lambda: client.get("/api/deadletter", headers=bearer("y")), ADMIN),
            (lambda: client.get("/api/stats", params={"token": "z"}), READ),
        ]  # fmt: skip
        for request, expected in checks:
            compared.clear()
            unauthorized(await request())
            # the wrong value went through compare_digest, whatever its length
            assert any(expected.encode() in bytes(b) for _, b in compared), (expected, compared)


async def test_rate_limits_are_shared_by_two_ingest_replicas(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_per_ip=5, rate_limit_per_app=3, apps=[APP, "other"])
    async with (
        app_client(create_app(settings, "ingest")) as one,
        app_client(create_app(settings, "ingest")) as two,
    ):
        # per client IP: 5 requests/s over both replicas together
        answers = await within_one_second(
            lambda i: (one if i % 2 else two).post("/api/open-wrapper", json=EVENT), 7
        )
        assert [r.status_code for r in answers] == [200] * 5 + [429] * 2
        limited = answers[-1]
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        await wait_for_next_second()
        # per app: 3 requests/s for an app id, over both replicas; another app is not affected
        no_ip = settings.model_copy(update={"rate_limit_per_ip": 0})
        async with (
            app_client(create_app(no_ip, "ingest")) as one,
            app_client(create_app(no_ip, "ingest")) as two,
        ):
            answers = await within_one_second(
                lambda i: (one if i % 2 else two).post("/v1/runs/ingest", json=[RUN]), 4
            )
            assert [r.status_code for r in answers] == [200, 200, 200, 429]
            assert int(answers[-1].headers["retry-after"]) >= 1
            other = await one.post("/v1/runs/ingest", json=[{**RUN, "app": "other"}])
            assert other.status_code == 200


async def wait_for_next_second() -> None:
    await asyncio.sleep(1.02 - time.time() % 1)


async def within_one_second(send: Callable[[int], Any], count: int) -> list[httpx.Response]:
    """`count` requests inside one fixed one-second window (the limiter's), retried from the
    next window if the clock crossed a second meanwhile."""
    for _ in range(5):
        await wait_for_next_second()
        window = int(time.time())
        answers = [await send(i) for i in range(count)]
        if int(time.time()) == window:
            return answers
    raise AssertionError("could not fit the requests in one second")


async def test_cors_only_for_the_configured_origins(make_settings: Callable[..., Settings]) -> None:
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,x-signature-256",
    }
    async with app_client(create_app(make_settings(), "all")) as client:  # default: no CORS
        response = await client.get("/api/stats", headers={"origin": "https://a.example"})
        assert "access-control-allow-origin" not in response.headers
    settings = make_settings(cors_origins="https://dash.example")
    async with app_client(create_app(settings, "all")) as client:
        allowed = {"origin": "https://dash.example"}
        response = await client.options("/api/open-wrapper", headers={**allowed, **preflight})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://dash.example"
        assert "x-signature-256" in response.headers["access-control-allow-headers"].lower()
        read = await client.get("/api/stats", headers=allowed)
        assert read.headers["access-control-allow-origin"] == "https://dash.example"
        evil = {"origin": "https://evil.example"}
        response = await client.options("/api/open-wrapper", headers={**evil, **preflight})
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers
        read = await client.get("/api/stats", headers=evil)
        assert "access-control-allow-origin" not in read.headers


@pytest.mark.parametrize(
    ("overrides", "services", "gaps"),
    [
        ({}, ["ingest", "stream"], 0),  # dev: nothing required
        ({"environment": "prod"}, ["aggregator"], 0),  # serves no guarded route
        ({"environment": "prod"}, ["ingest"], 2),
        ({"environment": "PRODUCTION"}, ["stream"], 1),
        ({"environment": "prod", "allow_insecure": True}, ["ingest"], 0),
        (
            {"environment": "prod", "ingest_hmac_secret": SECRET, "admin_token": ADMIN},
            ["ingest", "metrics"],
            0,
        ),
        ({"environment": "prod", "ingest_token": "short", "admin_token": ADMIN}, ["ingest"], 1),
        ({"environment": "prod", "ingest_token": "", "admin_token": ADMIN}, ["ingest"], 1),
    ],
)
def test_production_gaps(overrides: dict[str, Any], services: list[str], gaps: int) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", **overrides)
    assert len(production_gaps(settings, services)) == gaps
