"""The benchmark harness works: a tiny run (seconds) writes the JSON and BENCHMARKS.md.

No speed is asserted here (speed is what `make bench` reports); only that every figure the
smoke run covers was measured, with the expected keys and positive numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
GROUPS = "ingest,aggregator,sse,shards"
MEASURED = {"met", "missed", "reported"}
EXPECTED = {"ingest_single", "ingest_batch", "ingest_rss", "aggregator", "sse_latency",
            "sse_fanout", "gateway_rss_per_client", "shards_ingest", "shards_aggregator"}  # fmt: skip

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    require_binary("wrk")
    out = tmp_path_factory.mktemp("bench")
    json_path, md_path = out / "latest.json", out / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", GROUPS,
         "--out", str(json_path), "--markdown", str(md_path)],
        cwd=ROOT, check=False, capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_path.read_text()), md_path.read_text()


def test_results_describe_the_machine(smoke: tuple[dict, str]) -> None:
    results, _ = smoke
    assert results["schema"] == 1
    assert results["mode"] == "smoke"
    hw = results["hardware"]
    assert hw["nproc"] > 0
    assert hw["memory_bytes"] > 0
    assert hw["cpu_model"]
    assert len(hw["loadavg"]) == 3


def test_every_figure_was_measured_with_positive_numbers(smoke: tuple[dict, str]) -> None:
    results, _ = smoke
    figures = results["figures"]
    assert set(figures) == EXPECTED
    for name, fig in figures.items():
        assert {"title", "unit", "value", "target", "status", "details"} <= set(fig), name
        assert fig["status"] in MEASURED, (name, fig.get("error"))
        assert fig["value"] > 0, name
        if fig["reference"] is not None:
            assert fig["reference"] > 0, name
            assert fig["ratio"] > 0, name


def test_side_by_side_figures_carry_their_reference(smoke: tuple[dict, str]) -> None:
    figures = smoke[0]["figures"]
    for name in (
        "ingest_single",
        "ingest_batch",
        "aggregator",
        "shards_ingest",
        "shards_aggregator",
    ):
        assert figures[name]["reference"] > 0, name
        assert figures[name]["reference_name"], name
    for name in ("shards_ingest", "shards_aggregator"):  # 1 Redis and the cluster, CPU of each
        shares = figures[name]["details"]["rounds"][0]["cluster"]["cpu_share"]
        assert sum(k.startswith("redis-") for k in shares) == 3, shares
    latency = figures["sse_latency"]["details"]
    assert latency["expected_deliveries"] > 0
    assert latency["deliveries"] > 0
    assert latency["latency"]["p50_ms"] > 0
    assert figures["sse_fanout"]["details"]["steps"]


def test_markdown_holds_the_table_and_the_hardware(smoke: tuple[dict, str]) -> None:
    _, markdown = smoke
    assert "| figure | llmwatch | reference, same run | ratio | target | verdict |" in markdown
    assert "logical cores (nproc)" in markdown
    assert "## How to reproduce" in markdown
    for title in ("ingest, single-event POSTs", "aggregator events/s", "SSE fan-out", "shards:"):
        assert title in markdown
