"""One line or a small table of measured facts per figure, for BENCHMARKS.md: the numbers
behind each verdict that say what bounds it (CPU shares, stage latencies, steps). Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _cpu(shares: dict[str, float] | None) -> str:
    if not shares:
        return "n/a"
    return ", ".join(f"{name} {value:.2f}" for name, value in shares.items())


def _ingest(f: dict[str, Any]) -> list[str]:
    rounds = f["details"].get("rounds") or []
    out = []
    for i, r in enumerate(rounds):
        ours = r.get("ingest")
        if not ours:
            continue
        lat = ours["latency_us"]
        out.append(f"round {i + 1}: ingest {ours['rps']:,.0f} req/s, wrk latency p50 "
                   f"{lat['p50'] / 1000:.1f} ms / p99 {lat['p99'] / 1000:.1f} ms, {r.get('stored'):,} "
                   f"events stored; CPU (cores): {_cpu(r.get('cpu_share'))}; reference "
                   f"{r['reference'].get('rps') or r['reference'].get('rate'):,.0f}/s"
                   + (f" (CPU {_cpu(r['reference'].get('cpu_share'))})"
                      if r["reference"].get("cpu_share") else ""))  # fmt: skip
    return out


def _aggregator(f: dict[str, Any]) -> list[str]:
    d = f["details"]
    ref, agg = d.get("reference", {}), d.get("aggregator", {})
    out = [(f"{d.get('events', 0):,} events: the drain took {ref.get('seconds')} s, the aggregator "
           f"{agg.get('seconds')} s; CPU during the aggregator's drain (cores): "
           f"{_cpu(agg.get('cpu_share'))}")]  # fmt: skip
    commands = d.get("redis_commands") or {}
    if commands:
        top = sorted(commands.items(), key=lambda kv: -kv[1]["usec"])[:8]
        out.append("Redis commands during the aggregator's drain, calls per 1,000 events "
                   "(by server time): " + ", ".join(
                       f"{name} {row['calls_per_1k_events']}" for name, row in top))  # fmt: skip
    if d.get("stats_total") is not None:
        out.append(f"exactly-once check: `/api/stats` total {d['stats_total']:,} for "
                   f"{d.get('events', 0):,} stored events")  # fmt: skip
    return out


def _latency(f: dict[str, Any]) -> list[str]:
    d = f["details"]
    out = []
    for label, name in (("post_to_events_stream", "POST → XADD to the events stream (ingest)"),
                        ("post_to_feed", "POST → XADD to the feed (ingest + aggregator)")):  # fmt: skip
        s = d.get("stages", {}).get(label)
        if s:
            out.append(f"{name}: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms "
                       f"({s['count']:,} events; Redis ids have 1 ms resolution)")  # fmt: skip
    lat = d.get("latency", {})
    if lat:
        out.append(f"POST → SSE frame received (whole path): p50 {lat.get('p50_ms')} ms, p90 "
                   f"{lat.get('p90_ms')} ms, p99 {lat.get('p99_ms')} ms, p99.9 "
                   f"{lat.get('p999_ms')} ms over {lat.get('count', 0):,} deliveries")  # fmt: skip
    out.append(f"CPU during the run (cores): {_cpu(d.get('cpu_share'))}; sends that waited for a "
               f"free connection: {d.get('sender', {}).get('late', 0)}")  # fmt: skip
    return out


def _fanout(f: dict[str, Any]) -> list[str]:
    d = f["details"]
    head = (f"{d.get('clients', 0):,} clients held (connected in {d.get('connect_s')} s by "
            f"{d.get('receiver_processes')} receiver processes; refused {d.get('refused') or 0}); "
            "lag = last frame received after the last event was sent:")  # fmt: skip
    rows = [head, "",
            ("| offered deliveries/s | events/s | delivered/s | delivered | clients dropped | lag "
            "| CPU (cores) |"),
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in d.get("steps", []):
        rows.append(f"| {s['offered_deliveries_per_s']:,} | {s['events_per_s']:,.0f} | "
                    f"{s['deliveries_per_s']:,.0f} | {s['complete']:.1%} | {s['dropped']} | "
                    f"{s.get('drain_s', '?')} s | {_cpu(s.get('cpu_share'))} |")  # fmt: skip
    return rows


def _memory(f: dict[str, Any]) -> list[str]:
    d = f["details"]
    ref = d.get("reference", {})
    return [(f"gateway RSS {d.get('rss_before', 0) / 2**20:.1f} MB → {d.get('rss_after', 0) / 2**20:.1f}"
            f" MB with {d.get('clients', 0):,} idle clients; the bare ASGI SSE app under the same "
            f"uvicorn: {ref.get('per_client_kb')} KB per client")]  # fmt: skip


def _ingest_rss(f: dict[str, Any]) -> list[str]:
    peaks = f["details"].get("peak_rss_bytes_per_run") or []
    return [f"peak RSS per load run: {', '.join(f'{p / 2**20:.0f} MB' for p in peaks)}"]


def _growth(f: dict[str, Any]) -> list[str]:
    d = f["details"]
    out = [f"{label}: {d[label]['events']:,} events loaded and drained in "
           f"{d[label]['load_and_drain_s']} s (aggregator {d[label]['aggregator_rate']:,.0f} "
           f"events/s), Redis used memory {d[label]['redis_used_memory'] / 2**20:.0f} MB"
           for label in ("small", "large") if label in d]  # fmt: skip
    for label, lat in d["latency"].items():
        out.append(f"{label} stack, {lat['count']:,} sequential GETs: p50 {lat['p50_ms']} ms, "
                   f"p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms, p99.9 {lat['p999_ms']} ms, "
                   f"max {lat['max_ms']} ms")  # fmt: skip
    return out


def _horizontal(f: dict[str, Any]) -> list[str]:
    return [f"round {i + 1}: 1 replica {r['one']['events_per_s']:,.0f} events/s, 2 replicas "
            f"{r['two']['events_per_s']:,.0f} events/s"
            for i, r in enumerate(f["details"].get("rounds", []))]  # fmt: skip


SHARD_SIDES = (("single", "1 Redis"), ("cluster", "cluster"))


def shard_bound(rounds: list[dict[str, Any]], worker: str) -> str:
    """What bounds a shards figure, from the CPU shares measured on both sides: the one Python
    process, a redis-server, or neither (waiting)."""
    shares = [r[label]["cpu_share"] for r in rounds for label, _ in SHARD_SIDES if label in r]
    own = [s[worker] for s in shares if worker in s]
    servers = [v for s in shares for k, v in s.items() if k.startswith("redis")]
    if not own or not servers:
        return "CPU shares not measured"
    lo, hi, busiest = min(own), max(own), max(servers)
    if hi >= 0.8 and busiest < 0.5:
        why = (
            f"the one {worker} process (one core at most) bounds both sides, not Redis: more "
            f"shards cannot raise it here, more {worker} processes on more cores would"
        )
    elif busiest >= 0.8:
        why = "a redis-server used about a whole core: Redis bounds it, and shards spread that work"
    else:
        why = (
            "no process used a whole core: the rest is waiting (round trips, and a machine "
            "shared with the load generator and the other processes)"
        )
    return (
        f"{worker} process {lo:.2f}–{hi:.2f} of a core, busiest redis-server {busiest:.2f}: {why}"
    )


def redis_cost(rounds: list[dict[str, Any]]) -> str:
    """Redis CPU (all its servers) per 100,000 events/s on each side, and the rate at which one
    redis-server would use a whole core at that cost: how far Redis is from bounding the figure,
    whatever rate the Python process reached."""
    parts, single = [], None
    for label, name in SHARD_SIDES:
        costs = [sum(v for k, v in r[label]["cpu_share"].items() if k.startswith("redis"))
                 * 100_000 / r[label]["rate"] for r in rounds
                 if label in r and r[label].get("rate")]  # fmt: skip
        if costs:
            cost = sorted(costs)[len(costs) // 2]
            parts.append(f"{cost:.2f} ({name})")
            single = cost if label == "single" else single
    line = "Redis CPU per 100,000 events/s, all its servers, in cores: " + ", ".join(parts)
    if single:
        line += (f"; at that cost one redis-server would use a whole core near "
                 f"{round(100_000 / single, -3):,.0f} events/s")  # fmt: skip
    return line


def _shards(f: dict[str, Any]) -> list[str]:
    d = f["details"]
    worker = d.get("worker", "ingest")
    out = []
    for i, r in enumerate(d["rounds"]):
        sides = [f"{name} {r[label]['rate']:,.0f} events/s (CPU, cores: {_cpu(r[label].get('cpu_share'))})"
                 for label, name in SHARD_SIDES if label in r]  # fmt: skip
        out.append(f"round {i + 1}: " + "; ".join(sides))
    out += [shard_bound(d["rounds"], worker), redis_cost(d["rounds"])]
    counted = [(name, r[label]["stats_total"], r[label]["events"]) for r in d["rounds"]
               for label, name in SHARD_SIDES if r.get(label, {}).get("stats_total") is not None]  # fmt: skip
    if counted:
        out.append("exactly-once check: `/api/stats` total " + ", ".join(
            f"{total:,} of {events:,} ({name})" for name, total, events in counted))  # fmt: skip
    return out


FACTS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "ingest_single": _ingest,
    "ingest_batch": _ingest,
    "aggregator": _aggregator,
    "sse_latency": _latency,
    "sse_fanout": _fanout,
    "gateway_rss_per_client": _memory,
    "ingest_rss": _ingest_rss,
    "growth_stats": _growth,
    "growth_history": _growth,
    "horizontal": _horizontal,
    "shards_ingest": _shards,
    "shards_aggregator": _shards,
}


# The detail each figure's facts are made of: without it (a failed run) there are none.
NEEDS = {"ingest_single": "rounds", "ingest_batch": "rounds", "aggregator": "aggregator",
         "sse_latency": "latency", "sse_fanout": "steps", "gateway_rss_per_client": "rss_after",
         "ingest_rss": "peak_rss_bytes_per_run", "growth_stats": "latency",
         "growth_history": "latency", "horizontal": "rounds", "shards_ingest": "rounds",
         "shards_aggregator": "rounds"}  # fmt: skip


def facts(f: dict[str, Any]) -> list[str]:
    """Markdown lines; empty when the figure was not measured or its details are incomplete."""
    name = f.get("name", "")
    fn = FACTS.get(name)
    if fn is None or f.get("value") is None or not f.get("details", {}).get(NEEDS[name]):
        return []
    try:
        lines = fn(f)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return []
    if lines and lines[0].startswith("|") or any(line.startswith("|") for line in lines):
        return lines
    return [f"- {line}" for line in lines]
