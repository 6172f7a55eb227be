"""Read routes as data grows: `/api/stats` and `/api/history?limit=50` p99 latency with
`growth_small` vs `growth_large` events stored.

Two independent stacks side by side, each its own redis-server: both are loaded (XADD of
template copies, drained by an aggregator, which is then stopped so nothing else runs). Then one
client sends sequential GETs alternating between the small and the large stack's gateway,
request by request, so a hiccup of the (possibly shared) machine hits both sides alike; the
p99 of each side is compared. Sequential requests measure the route's own cost, not queueing,
and at one request at a time the Python client is not what limits anything.
"""

from __future__ import annotations

import time
from typing import Any

import uvloop

from bench import loader, stats
from bench.bodies import BENCH_APP
from bench.client import Connection
from bench.figures.aggregator import start_aggregator, wait_drained
from bench.figures.common import failed, figure, redis_client
from bench.plan import Plan
from bench.procs import Proc, Procs, procs

ROUTES = {
    "growth_stats": "/api/stats",
    "growth_history": "/api/history?limit=50",
}
WARMUP_REQUESTS = 100
BOUND = 1.5


def _spec(name: str, plan: Plan) -> tuple[str, str, str, str]:
    title = (f"growth: `{ROUTES[name]}` p99, {plan.growth_small:,} vs "
             f"{plan.growth_large:,} stored events")  # fmt: skip
    return (name, title, "ms", f"p99 ratio ≤ {BOUND}")


def run(plan: Plan) -> list[dict[str, Any]]:
    details: dict[str, Any] = {"requests_per_side": plan.growth_requests}
    with procs(plan.workdir / "growth") as ps:
        try:
            small = _stack(ps, "small", plan.growth_small, None, details)
            large = _stack(ps, "large", plan.growth_large, small["group"], details)
            results = uvloop.run(_measure(plan, small["gateway"], large["gateway"]))
        except Exception as exc:  # noqa: BLE001
            return [failed(*_spec(name, plan), exc, details) for name in ROUTES]
    out = []
    for name, latency in results.items():
        p99_small, p99_large = latency["small"]["p99_ms"], latency["large"]["p99_ms"]
        ratio = stats.ratio(p99_large, p99_small)
        spec = _spec(name, plan)
        status = stats.verdict([stats.at_most(ratio, BOUND)])
        out.append(figure(*spec[:2], unit="ms", value=p99_large, reference=p99_small,
                          reference_name=f"{plan.growth_small:,} events", ratio=ratio,
                          target=spec[3], status=status,
                          details={**details, "route": ROUTES[name], "latency": latency})
                   | {"summary": f"p99 {p99_large:.2f} ms at {plan.growth_large:,} events"})  # fmt: skip
    return out


async def _measure(plan: Plan, small: Proc, large: Proc) -> dict[str, dict[str, Any]]:
    sides = {"small": Connection("127.0.0.1", small.port or 0),
             "large": Connection("127.0.0.1", large.port or 0)}  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, route in ROUTES.items():
            timings: dict[str, list[int]] = {"small": [], "large": []}
            for i in range(WARMUP_REQUESTS + plan.growth_requests):
                order = ("small", "large") if i % 2 else ("large", "small")
                for side in order:
                    t0 = time.perf_counter_ns()
                    status, _ = await sides[side].request("GET", route)
                    elapsed = time.perf_counter_ns() - t0
                    if status != 200:
                        raise RuntimeError(f"GET {route} ({side}) answered {status}")
                    if i >= WARMUP_REQUESTS:
                        timings[side].append(elapsed)
            results[name] = {side: stats.latency_summary(t) for side, t in timings.items()}
    finally:
        for conn in sides.values():
            await conn.close()
    return results


def _stack(ps: Procs, name: str, count: int, group: list[loader.Template] | None,
           details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    server = ps.redis(f"redis-{name}")
    r = redis_client(server.url)
    if group is None:
        ingest = ps.service("ingest", server.url, name=f"ingest-{name}",
                            settings={"LLMWATCH_APPS": BENCH_APP})  # fmt: skip
        group = loader.templates(ingest, r)
        ingest.stop()
    agg = start_aggregator(ps, server.url, r)
    t0 = time.perf_counter()
    ids = loader.load(r, group, count, run=name)
    drained = wait_drained(agg, r, ids)
    agg.stop()  # nothing but the gateway runs while the routes are measured
    details[name] = {"events": len(ids), "load_and_drain_s": round(time.perf_counter() - t0, 1),
                     "aggregator_rate": drained["rate"],
                     "redis_used_memory": r.info("memory").get("used_memory")}  # fmt: skip
    r.close()
    gateway = ps.service("stream", server.url, name=f"stream-{name}")
    return {"group": group, "gateway": gateway}
