"""Prometheus on the repo's own deploy/prometheus.yml and alerts.yml really scrapes every replica.

The shipped files are checked by promtool, the rules are unit-tested by `promtool test rules`,
and a running prometheus (local topology: file_sd instead of Docker DNS) is queried over its
HTTP API.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.topology import SERVICES, Topology
from tests.conftest import require_binary
from tests.e2e.topology_support import WAIT_S, poll, post_seed_samples, topology

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_shipped_config_and_rules() -> None:
    config = _promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", str(DEPLOY / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_rules_fire_when_they_should() -> None:
    result = _promtool("test", "rules", str(Path(__file__).with_name("alerts_test.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    yield from topology(
        tmp_path_factory,
        {"ingest": 3, "aggregator": 2, "stream": 1, "metrics": 1},
        prometheus=True,
        scrape_interval="1s",
    )


async def _query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/query", params={"query": promql})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_every_replica_of_every_service_is_up(stack: Topology) -> None:
    expected = {(p.service, p.address) for p in stack.processes if p.service in SERVICES}
    assert len(expected) == 7
    async with httpx.AsyncClient(base_url=str(stack.prometheus_url), timeout=WAIT_S) as prom:
        result = await poll(
            lambda: _query(prom, "up == 1"),
            lambda r: {(s["metric"]["job"], s["metric"]["instance"]) for s in r} == expected,
        )
        assert {(s["metric"]["job"], s["metric"]["instance"]) for s in result} == expected
        targets = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == set(SERVICES)
    assert all(t["health"] == "up" for t in targets), [t["lastError"] for t in targets]


async def test_ingest_counter_summed_over_replicas_equals_events_posted(stack: Topology) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=WAIT_S) as client:
        posted = await post_seed_samples(client)
    total = "sum(llmwatch_ingest_events_accepted_total)"
    async with httpx.AsyncClient(base_url=str(stack.prometheus_url), timeout=WAIT_S) as prom:
        result = await poll(lambda: _query(prom, total),
                            lambda r: r and float(r[0]["value"][1]) >= posted.events)  # fmt: skip
        assert float(result[0]["value"][1]) == posted.events
        by_source = await _query(prom, "sum by (source) (llmwatch_ingest_events_accepted_total)")
        assert {s["metric"]["source"]: float(s["value"][1]) for s in by_source} == posted.by_source
        # Every replica took a share (nginx round-robin), each scraped on its own.
        spread = await _query(prom, "sum by (instance) (llmwatch_ingest_events_accepted_total) > 0")
        assert len(spread) == 3
        # The two aggregators share the group's work: together they applied each event once.
        processed = await poll(
            lambda: _query(prom, "sum(llmwatch_aggregator_events_processed_total)"),
            lambda r: r and float(r[0]["value"][1]) >= posted.events,
        )
        assert float(processed[0]["value"][1]) == posted.events


async def test_shipped_rules_are_loaded_and_evaluate(stack: Topology) -> None:
    async with httpx.AsyncClient(base_url=str(stack.prometheus_url), timeout=WAIT_S) as prom:
        groups = await poll(
            lambda: _rules(prom),
            lambda gs: all(
                r.get("lastEvaluation", "").startswith("20") for g in gs for r in g["rules"]
            ),
        )
    assert {g["name"] for g in groups} == {"llmwatch.recording", "llmwatch.alerts"}
    bad = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert not bad


async def _rules(prom: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await prom.get("/api/v1/rules")
    response.raise_for_status()
    return list(response.json()["data"]["groups"])
