"""Real processes (README, Guarantees: security): tokens and payload secrets never reach the
logs, even at debug level; a default process listens on loopback only; in production mode a
process refuses to start without the tokens its routes need, unless explicitly allowed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from services.ingest.auth import sign
from tests.procs import ROOT, Service, Stack, service_env, stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INGEST = "ingest-TOKEN-7f3a9c1e5b"
ADMIN = "admin-TOKEN-2d8e6b4a0c"
READ = "read-TOKEN-9b1f7d3e5a"
HMAC = "hmac-SECRET-4c6a8e0b2d"
PAYLOAD = "sk-live-PAYLOAD-SECRET-31337"  # what an event may carry: an API key in a prompt
WRONG = "wrong-TOKEN-guess-1f2e3d"
NEVER_LOGGED = [INGEST, ADMIN, READ, HMAC, PAYLOAD, WRONG]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Stack]:
    yield from stack(tmp_path)


async def test_no_token_or_payload_secret_in_debug_logs(procs: Stack) -> None:
    app = "log-app"
    everything = procs.service(
        "all", log_level="debug", ingest_token=INGEST, admin_token=ADMIN, read_token=READ,
        ingest_hmac_secret=HMAC, apps=[app], sample_interval_s=0.2,
    )  # fmt: skip
    event = {"event_type": "error", "command": "ask", "status": "failed", "session_id": "s1",
             "metadata": {"prompt": f"my key is {PAYLOAD}", "error": PAYLOAD}}  # fmt: skip
    runs = [{"type": "llm", "event": "error", "app": app, "runId": "r1", "name": "gpt-4o",
             "timestamp": "2026-01-01T00:00:00Z", "input": PAYLOAD,
             "error": {"message": PAYLOAD, "stack": PAYLOAD}}]  # fmt: skip

    def signed(body: object, token: str = INGEST, key: str = HMAC) -> dict[str, object]:
        raw = orjson.dumps(body)
        headers = {"authorization": f"Bearer {token}", "x-signature-256": sign(raw, key),
                   "content-type": "application/json"}  # fmt: skip
        return {"content": raw, "headers": headers}

    async with httpx.AsyncClient(base_url=everything.url, timeout=10) as client:
        async with client.stream("GET", "/api/stream", params={"token": READ}) as feed:
            assert feed.status_code == 200
            assert (await client.post("/api/open-wrapper", **signed(event))).status_code == 200
            assert (await client.post("/v1/runs/ingest", **signed(runs))).status_code == 200
            received = b""
            async for chunk in feed.aiter_raw():  # the secrets went through the whole pipeline
                received += chunk
                if received.count(PAYLOAD.encode()) >= 2 and b"run.failed" in received:
                    break
        refusals = [
            await client.post("/api/open-wrapper", **signed(event, token=WRONG)),
            await client.post("/api/open-wrapper", **signed(event, key=WRONG)),
            await client.post("/api/open-wrapper", **signed({**event, "timestamp": PAYLOAD})),
            await client.post("/api/open-wrapper", **signed({"events": PAYLOAD})),
            await client.get("/api/stats", params={"token": WRONG}),
            await client.get("/api/apps", headers={"authorization": f"Bearer {WRONG}"}),
            await client.get("/api/events", params={"token": WRONG}),
        ]
        assert [r.status_code for r in refusals] == [401, 401, 422, 422, 401, 401, 401]
        reads = [
            await client.get("/api/history", headers={"authorization": f"Bearer {READ}"}),
            await client.get("/api/runs/r1", params={"token": READ}),
            await client.get("/api/notifications", params={"token": ADMIN}),
            await client.get("/api/apps", headers={"authorization": f"Bearer {ADMIN}"}),
            await client.post("/api/reload", headers={"authorization": f"Bearer {ADMIN}"}),
        ]
        assert [r.status_code for r in reads] == [200] * 5
        assert PAYLOAD in reads[0].text
        await asyncio.sleep(0.5)  # a few sampler ticks and aggregator rounds, logged at debug
    assert everything.stop() in (0, 143)  # SIGTERM: a clean shutdown
    log = everything.log_text()
    assert " DEBUG " in log  # the level really was debug
    leaked = [secret for secret in NEVER_LOGGED if secret in log]
    assert not leaked, leaked


def listening(svc: Service) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(svc.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}  # fmt: skip


def test_default_bind_is_loopback(procs: Stack) -> None:
    svc = Service("ingest", procs.redis.url, procs.workdir / "logs", service_env(), host=None)
    procs.services.append(svc)
    svc.start()
    assert listening(svc) == {"127.0.0.1"}


def llmwatch(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=service_env(**settings),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "missing"),
    [
        ("ingest", ["LLMWATCH_INGEST_TOKEN", "LLMWATCH_ADMIN_TOKEN"]),
        ("stream", ["LLMWATCH_ADMIN_TOKEN"]),
        ("metrics", ["LLMWATCH_ADMIN_TOKEN"]),
        ("all", ["LLMWATCH_INGEST_TOKEN", "LLMWATCH_ADMIN_TOKEN"]),
    ],
)
def test_production_refuses_to_start_without_tokens(
    procs: Stack, target: str, missing: list[str]
) -> None:
    done = llmwatch("serve", target, "--redis-url", procs.redis.url, environment="prod")
    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "LLMWATCH_ALLOW_INSECURE" in done.stderr
    assert all(name in done.stderr for name in missing), done.stderr
    short = llmwatch("serve", target, "--redis-url", procs.redis.url, environment="prod",
                     ingest_token="short", admin_token="short")  # fmt: skip
    assert short.returncode == 2 and "shorter than 16" in short.stderr


def test_production_starts_with_tokens_or_when_explicitly_allowed(procs: Stack) -> None:
    secured = procs.service("all", environment="prod", ingest_token=INGEST, admin_token=ADMIN)
    assert httpx.get(secured.url + "/readyz").status_code == 200
    open_anyway = procs.service("ingest", environment="prod", allow_insecure="true",
                                log_level="info")  # fmt: skip
    assert httpx.post(open_anyway.url + "/api/open-wrapper", json={
        "event_type": "request", "command": "a", "status": "start"}).status_code == 200  # fmt: skip
    assert "LLMWATCH_ALLOW_INSECURE" in open_anyway.log_text()
    aggregator = procs.service("aggregator", environment="prod")  # serves no guarded route
    assert aggregator.alive()
    up = llmwatch("up", environment="prod", data_dir=str(procs.workdir / "up"))
    assert up.returncode == 2 and "LLMWATCH_INGEST_TOKEN" in up.stderr
