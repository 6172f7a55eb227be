"""Schemathesis against the OpenAPI document of every service, on a live `llmwatch serve all`
(every route of every service, each route's code as in its own service): at least 1,000
generated cases per write route and a few dozen per other route, positive and negative. No
5xx; every status, content type, header and body as the document declares (README, Guarantees:
client input never yields a 5xx). The generated events also go through the aggregator, which
must apply or refuse each without failing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.targets import FACTORIES, create_app
from shared.settings import Settings
from tests import loadgen
from tests.procs import ROOT, Service, Stack, stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRITES = {  # at least 1,000 generated cases per write route
    "POST /api/open-wrapper": (750, 300),
    "POST /v1/runs/ingest": (750, 300),
    "POST /api/report": (750, 300),
    "POST /api/apps": (700, 300),
}
STREAMS = {"GET /api/events": (10, 10), "GET /api/stream": (10, 10)}
OTHERS = (40, 30)


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack(tmp_path_factory.mktemp("schemathesis"))


def operations(document: dict) -> list[str]:
    return [f"{method.upper()} {path}" for path, ops in document["paths"].items()
            for method in ops]  # fmt: skip


def test_every_service_documents_what_its_routes_answer() -> None:
    """Each service alone serves a subset of `all`'s document, declared the same way."""
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    everything = create_app(settings, "all").openapi()
    for target in FACTORIES:
        alone = create_app(settings, target).openapi()
        for path, ops in alone["paths"].items():
            assert ops == everything["paths"][path], (target, path)
        assert "HTTPValidationError" not in json.dumps(alone)


def shares(jobs: dict[str, tuple[int, int]], workers: int) -> list[list[str]]:
    """Jobs dealt to workers, heaviest first, each to the least loaded (by cases)."""
    loads: list[tuple[int, list[str]]] = [(0, []) for _ in range(workers)]
    for label, (positive, negative) in sorted(jobs.items(), key=lambda j: -sum(j[1])):
        load, mine = min(loads, key=lambda pair: pair[0])
        loads.remove((load, mine))
        loads.append((load + positive + negative, [*mine, f"{label}={positive},{negative}"]))
    return [mine for _, mine in loads]


@pytest.mark.timeout(300)
async def test_no_5xx_and_every_answer_as_documented(procs: Stack, tmp_path: Path) -> None:
    server = procs.service("all", apps=["fuzz-app"], sample_interval_s=1)
    async with httpx.AsyncClient(timeout=10) as client:
        document = (await client.get(server.url + "/openapi.json")).json()
    jobs = {op: OTHERS for op in operations(document)}
    jobs.update(STREAMS)
    jobs.update(WRITES)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = []
    for share in shares(jobs, 2):  # generation is single-threaded: one worker per core
        workers.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.schema_fuzz", server.url, *share, cwd=tmp_path,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        ))  # fmt: skip
    try:
        outputs = await asyncio.wait_for(
            asyncio.gather(*(worker.communicate() for worker in workers)), timeout=280
        )
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    results = []
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()[-3000:]
        results += [json.loads(line) for line in out.decode().splitlines() if line[:1] == "{"]
    by_op = {r["op"]: r for r in results}
    assert set(by_op) == set(jobs)
    failures = {op: r["failures"] for op, r in by_op.items() if r["failures"]}
    assert not failures, json.dumps(failures, indent=1)[:20000]
    for op in WRITES:
        assert by_op[op]["cases"] >= 1000, by_op[op]
    assert not any(int(status) >= 500 for r in results for status in r["statuses"])
    accepted = sum(by_op[op]["statuses"].get("200", 0) for op in WRITES)
    assert accepted > 100, {op: by_op[op]["statuses"] for op in WRITES}  # not all refused
    await aggregator_took_everything(server, procs)


async def aggregator_took_everything(server: Service, procs: Stack) -> None:
    redis = Redis.from_url(procs.redis.url)
    try:
        await loadgen.drained(redis, 1, server)
    finally:
        await redis.aclose()
    assert server.metric("llmwatch_aggregator_events_failed_total") == 0
    assert server.metric("llmwatch_aggregator_deadletters_total") == 0
    assert "Traceback" not in server.log_text(), server.log_tail(60)
