"""Read routes as data grows: `/api/stats` and `/api/history?limit=50` p99 latency with
`growth_small` vs `growth_large` events stored.

Two independent stacks side by side, each its own redis-server: both are loaded (XADD of
template copies, drained by an aggregator, which is then stopped so nothing else runs), then
wrk measures each route on the small and the large stack, alternating.
"""

from __future__ import annotations

import time
from typing import Any

from bench import loader, stats, wrk
from bench.bodies import BENCH_APP
from bench.figures.aggregator import start_aggregator, wait_drained
from bench.figures.common import failed, figure, redis_client
from bench.plan import Plan
from bench.procs import Proc, Procs, procs

ROUTES = {
    "growth_stats": "/api/stats",
    "growth_history": "/api/history?limit=50",
}
CONNECTIONS = 1  # sequential requests: the p99 is the route's own cost, not queueing
BOUND = 1.5


def _spec(name: str, plan: Plan) -> tuple[str, str, str, str]:
    title = (f"growth: `{ROUTES[name]}` p99, {plan.growth_small:,} vs "
             f"{plan.growth_large:,} stored events")  # fmt: skip
    return (name, title, "ms", f"p99 ratio ≤ {BOUND}")


def run(plan: Plan) -> list[dict[str, Any]]:
    details: dict[str, Any] = {}
    with procs(plan.workdir / "growth") as ps:
        try:
            small = _stack(ps, "small", plan.growth_small, None, details)
            large = _stack(ps, "large", plan.growth_large, small["group"], details)
            results = _measure(plan, ps, small["gateway"], large["gateway"])
        except Exception as exc:  # noqa: BLE001
            return [failed(*_spec(name, plan), exc, details) for name in ROUTES]
    out = []
    for name, rounds in results.items():
        p99_small = stats.median([r["small"]["latency_us"]["p99"] for r in rounds]) / 1000
        p99_large = stats.median([r["large"]["latency_us"]["p99"] for r in rounds]) / 1000
        ratio = stats.ratio(p99_large, p99_small)
        spec = _spec(name, plan)
        status = stats.verdict([stats.at_most(ratio, BOUND)])
        out.append(figure(*spec[:2], unit="ms", value=p99_large, reference=p99_small,
                          reference_name=f"{plan.growth_small:,} events", ratio=ratio,
                          target=spec[3], status=status,
                          details={**details, "route": ROUTES[name], "rounds": rounds,
                                   "wrk": f"GET -t1 -c{CONNECTIONS} -d{plan.growth_requests_s}s"})
                   | {"summary": f"p99 {p99_large:.2f} ms at {plan.growth_large:,} events"})  # fmt: skip
    return out


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


def _measure(plan: Plan, ps: Procs, small: Proc, large: Proc) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ROUTES}
    for gateway in (small, large) if plan.warmup_s else ():
        for route in ROUTES.values():
            wrk.run(gateway.url + route, workdir=ps.workdir, duration_s=plan.warmup_s,
                    connections=CONNECTIONS)  # fmt: skip
    for _ in range(plan.growth_rounds):
        for name, route in ROUTES.items():
            entry = {}
            for label, gateway in (("small", small), ("large", large)):
                res = wrk.run(gateway.url + route, workdir=ps.workdir,
                              duration_s=plan.growth_requests_s, connections=CONNECTIONS)  # fmt: skip
                if res.error_count:
                    raise RuntimeError(f"GET {route} ({label}): errors {res.errors}")
                entry[label] = res.as_dict()
            results[name].append(entry)
    return results
