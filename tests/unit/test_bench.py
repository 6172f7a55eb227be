"""The benchmark harness's pure parts: percentiles, wrk's summary, template copies, profiles,
and the BENCHMARKS.md rendering."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import cli, facts, loader, profile, report, stats, wrk
from bench.bodies import PLACEHOLDER, batch_template, loader_group, paced_parts
from bench.figures.common import fill_ids

pytestmark = pytest.mark.unit


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=300),
       st.floats(min_value=0, max_value=100))  # fmt: skip
def test_percentile_is_a_member_bounded_by_min_and_max(values: list[int], p: float) -> None:
    ordered = sorted(values)
    got = stats.percentile(ordered, p)
    assert got in ordered
    assert ordered[0] <= got <= ordered[-1]


def test_percentile_nearest_rank() -> None:
    assert stats.percentile(list(range(1, 101)), 99) == 99
    assert stats.percentile(list(range(1, 101)), 50) == 50
    assert stats.percentile([7], 99.9) == 7


def test_ratio_and_verdict() -> None:
    assert stats.ratio(30, 60) == 0.5
    assert stats.ratio(1, 0) is None
    assert stats.verdict([stats.at_least(0.6, 0.6), stats.at_most(1.5, 1.5)]) == "met"
    assert stats.verdict([stats.at_least(None, 0.6)]) == "missed"


def test_wrk_summary_line_is_parsed() -> None:
    out = ('Running 1s test\nBENCHJSON {"requests":100,"duration_us":2000000,"bytes":5,'
           '"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":0},'
           '"latency_us":{"mean":1.5,"max":9,"p50":1,"p90":2,"p99":8,"p999":9}}\n')  # fmt: skip
    result = wrk.parse(out)
    assert result.rps == 50
    assert result.error_count == 3
    assert result.latency_us["p99"] == 8


def test_wrk_without_summary_raises() -> None:
    with pytest.raises(wrk.WrkError, match="no summary"):
        wrk.parse("", "unable to connect", 1)


def test_templates_fill_every_placeholder_uniquely() -> None:
    body = orjson.loads(fill_ids(batch_template(10), "run"))
    ids = [e["id"] for e in body["events"]]
    assert len(set(ids)) == 10
    assert PLACEHOLDER not in orjson.dumps(body).decode()


def test_loader_copies_get_fresh_identities() -> None:
    stored = orjson.dumps({"id": "5a0e2f4c-0000-4000-8000-000000000000", "metadata": {
        "session_id": "zzS0003zz", "runId": "zzS0003zz"}})  # fmt: skip
    template = loader.Template(stored)
    a, b = orjson.loads(template.render(b"-x1")), orjson.loads(template.render(b"-x2"))
    assert a["id"] != b["id"]
    assert a["metadata"]["session_id"] == a["metadata"]["runId"] == "S0003-x1"
    assert b["metadata"]["session_id"] == "S0003-x2"


def test_loader_group_counts() -> None:
    assert sum(len(orjson.loads(body)["events"]) for _, body in loader_group()) == 20


def test_paced_parts_make_valid_json() -> None:
    head, mid, tail = paced_parts()
    event = orjson.loads(head + b"id-1" + mid + b"123" + tail)
    assert event["id"] == "id-1"
    assert event["bench_t"] == 123


def test_profile_summary_shares() -> None:
    raw = ("process 1;main (services/cli.py:1);run (services/ingest/routes.py:5);json (orjson.py:1) 3\n"
           "process 1;main (services/cli.py:1);wait (asyncio/base_events.py:9) 1\n"
           "process 1;thread 2;_worker (concurrent/futures/thread.py:81) 9\n")  # fmt: skip
    summary = profile.summarize(raw, rate=100, seconds=1)
    assert summary["samples"] == 4
    assert summary["self"][0] == ["json (orjson.py)", 75.0]
    assert summary["inclusive"] == [["run (ingest/routes.py)", 75.0]]


def _figure(**over: object) -> dict:
    base = {"name": "ingest_single", "title": "ingest, single-event POSTs", "unit": "req/s",
            "value": 6000.0, "reference": 10000.0, "reference_name": "bare", "ratio": 0.6,
            "target": "ratio ≥ 0.6", "status": "met", "details": {}}  # fmt: skip
    return base | over


def test_report_renders_table_hardware_and_notes() -> None:
    results = {"mode": "quick", "command": "make bench", "generated_at": "now", "duration_s": 1,
               "hardware": {"cpu_model": "CPU X", "nproc": 2, "memory_gib": 4.0,
                            "loadavg": [0.1, 0.2, 0.3]},
               "figures": {"ingest_single": _figure(),
                           "aggregator": _figure(name="aggregator", title="agg", status="error",
                                                 value=None, error="boom")}}  # fmt: skip
    text = report.render(results)
    assert "| ingest, single-event POSTs | 6,000 req/s | 10,000 req/s (bare) | 0.60 |" in text
    assert "| CPU X | 2 | 4.0 GiB |" in text
    assert "Not measured in this run: `boom`" in text
    assert "## How to reproduce" in text


def test_render_rewrites_the_markdown_from_the_json_alone(tmp_path: Path) -> None:
    results = {"mode": "full", "command": "make bench FULL=1", "generated_at": "then",
               "duration_s": 1, "hardware": {"cpu_model": "CPU Y", "nproc": 2},
               "figures": {"ingest_single": _figure()}}  # fmt: skip
    out, markdown = tmp_path / "latest.json", tmp_path / "BENCHMARKS.md"
    out.write_bytes(orjson.dumps(results))
    assert cli.main(["--render", "--out", str(out), "--markdown", str(markdown)]) == 0
    assert markdown.read_text() == report.render(results)  # the numbers of the JSON, as they were
    assert orjson.loads(out.read_bytes()) == results  # untouched


def test_facts_tolerate_missing_details() -> None:
    for name in facts.FACTS:
        assert facts.facts(_figure(name=name, details={})) == [], name
    assert facts.facts(_figure(value=None)) == []


def test_facts_of_a_fanout_step_table() -> None:
    step = {"offered_deliveries_per_s": 100_000, "events_per_s": 100.0,
            "deliveries_per_s": 99_000.0, "complete": 1.0, "dropped": 0, "drain_s": 0.1,
            "cpu_share": {"stream": 0.8}}  # fmt: skip
    lines = facts.facts(_figure(name="sse_fanout", details={"clients": 1000, "steps": [step]}))
    assert lines[-1] == "| 100,000 | 100 | 99,000 | 100.0% | 0 | 0.1 s | stream 0.80 |"


def _side(rate: float, **cpu: float) -> dict:
    return {"rate": rate, "cpu_share": cpu, "events": 100, "stats_total": 100}


def test_shard_bound_names_what_limits_it() -> None:
    python_bound = [
        {
            "single": _side(1, ingest=0.97, redis=0.1),
            "cluster": _side(1, ingest=0.99, **{"redis-1": 0.04, "redis-2": 0.05}),
        }
    ]
    assert "the one ingest process" in facts.shard_bound(python_bound, "ingest")
    assert "0.97–0.99" in facts.shard_bound(python_bound, "ingest")
    redis_bound = [{"single": _side(1, aggregator=0.5, redis=0.95)}]
    assert "Redis bounds it" in facts.shard_bound(redis_bound, "aggregator")
    waiting = [{"single": _side(1, ingest=0.4, redis=0.2)}]
    assert "waiting" in facts.shard_bound(waiting, "ingest")
    assert facts.shard_bound([{"single": _side(1)}], "ingest") == "CPU shares not measured"


def test_facts_of_the_shards_figure() -> None:
    rounds = [{"single": _side(20_000, ingest=0.98, redis=0.1),
               "cluster": _side(19_000, ingest=0.99, **{"redis-1": 0.03})}]  # fmt: skip
    lines = facts.facts(_figure(name="shards_ingest", value=19_000.0,
                                details={"rounds": rounds, "worker": "ingest"}))  # fmt: skip
    assert lines[0] == ("- round 1: 1 Redis 20,000 events/s (CPU, cores: ingest 0.98, redis 0.10); "
                        "cluster 19,000 events/s (CPU, cores: ingest 0.99, redis-1 0.03)")  # fmt: skip
    assert "not Redis" in lines[1]
    assert lines[2] == ("- Redis CPU per 100,000 events/s, all its servers, in cores: "
                        "0.50 (1 Redis), 0.16 (cluster); at that cost one redis-server "
                        "would use a whole core near 200,000 events/s")  # fmt: skip
    assert (
        lines[3]
        == "- exactly-once check: `/api/stats` total 100 of 100 (1 Redis), 100 of 100 (cluster)"
    )


def test_loader_routes_copies_as_ingest_does() -> None:
    watcher = {"id": "e1", "source": "webhook", "metadata": {"session_id": "S1-x0"}}
    lunary = {"id": "e2", "source": "llmonitor", "metadata": {"runId": "R1-x0"}}
    alone = {"id": "e3", "source": "webhook", "metadata": {}}
    assert [loader.route(orjson.dumps(e)) for e in (watcher, lunary, alone)] == [
        "S1-x0",
        "R1-x0",
        "e3",
    ]


def test_plans_size_the_shards_figure() -> None:
    from pathlib import Path

    from bench.plan import make_plan

    quick, smoke = make_plan("quick", Path("/tmp")), make_plan("smoke", Path("/tmp"))
    assert quick.shard_partitions % quick.shard_masters == 0  # partitions spread evenly
    assert smoke.shard_events < quick.shard_events < make_plan("full", Path("/tmp")).shard_events
