"""Live delivery through the whole pipeline: POST → ingest → Redis → aggregator → feed →
stream gateway → SSE client.

- latency: `latency_rate` single-event POSTs/s (open loop) while `latency_clients` clients listen
  on `/api/events`; each event carries its send time, each receiver records receive − send.
  Stages: send → events stream and send → feed (from entry ids), feed → socket (the gateway's
  own histogram).
- fan-out: one gateway process holding `fanout_clients` connections; events are posted at a rate
  that offers each step's deliveries/s, and receivers count what arrives in the send window.
- memory: the gateway's RSS before and after those clients connect, idle, per client.
Every server is a `llmwatch serve` process; receivers are `bench.receiver` processes.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.request
from typing import Any

import uvloop
from prometheus_client.parser import text_string_to_metric_families

from bench import pacer, profile, stats
from bench.bodies import BENCH_APP, single_template
from bench.figures.common import expect_ok, failed, figure, fill_ids, redis_client
from bench.plan import Plan
from bench.procs import Proc, Procs, cpu_seconds, procs, ready
from bench.receivers import ReceiverGroup
from shared import keys

LATENCY = ("sse_latency", "POST → SSE delivery latency, 1,000 events/s, 100 clients", "ms",
           "p50 < 5 ms, p99 < 25 ms")  # fmt: skip
FANOUT = ("sse_fanout", "SSE fan-out, one gateway process", "deliveries/s",
          "5,000 clients held; ≥ 100,000 deliveries/s")  # fmt: skip
MEMORY = ("gateway_rss_per_client", "gateway RSS per idle SSE client", "KB", "< 20 KB")
GATEWAY_SETTINGS = {"LLMWATCH_SSE_MAX_PER_IP": "100000", "LLMWATCH_SSE_MAX_STREAMS": "20000"}
STAMP = re.compile(rb'"bench_t":(\d+)')


def run(plan: Plan) -> list[dict[str, Any]]:
    with procs(plan.workdir / "sse") as ps:
        try:
            server = ps.redis()
            ingest = ps.service("ingest", server.url, settings={"LLMWATCH_APPS": BENCH_APP},
                                wait=False)  # fmt: skip
            aggregator = ps.service("aggregator", server.url, wait=False)
            ready(ingest, aggregator)
            expect_ok(ingest, pacer.PATH, fill_ids(single_template()))
        except Exception as exc:  # noqa: BLE001
            return [failed(*LATENCY, exc), failed(*FANOUT, exc), failed(*MEMORY, exc)]
        stack = {"ingest": ingest, "aggregator": aggregator}
        redis_pid = server.process.pid if server.process else 0
        out = []
        try:
            out.append(uvloop.run(_latency(plan, ps, server.url, stack, redis_pid)))
        except Exception as exc:  # noqa: BLE001
            out.append(failed(*LATENCY, exc))
        try:
            out += uvloop.run(_fanout(plan, ps, server.url, stack, redis_pid))
        except Exception as exc:  # noqa: BLE001
            out += [failed(*FANOUT, exc), failed(*MEMORY, exc)]
    return out


async def _latency_pass(
    plan: Plan, ps: Procs, gateway: Proc, stack: dict[str, Proc], pids: dict[str, int],
    clients: int, *, warm: bool = True,
) -> tuple[ReceiverGroup, Any, dict[str, float], dict[str, Any]]:  # fmt: skip
    """`clients` receivers on `gateway` while the sender POSTs `latency_rate` events/s for
    `duration_s`: (the receivers, stopped, with their latencies; the send report; CPU shares;
    the receivers' final counts)."""
    group = ReceiverGroup(gateway.port or 0, clients, min(plan.latency_receivers, clients),
                          mode="latency", workdir=ps.workdir)  # fmt: skip
    try:
        await group.start()
        if group.connected < clients:
            raise RuntimeError(f"only {group.connected}/{clients} SSE clients "
                               f"connected (refused {group.refused}, errors {group.errors})")  # fmt: skip
        port = stack["ingest"].port or 0
        if warm and plan.warmup_s:
            await pacer.paced(port, rate=plan.latency_rate, duration=plan.warmup_s,
                              marker="bench_w")  # fmt: skip
        before = _cpu(pids, group)
        sent = await pacer.paced(port, rate=plan.latency_rate, duration=plan.duration_s)
        cpu = _cpu_share(before, _cpu(pids, group), sent.seconds)
        await asyncio.sleep(plan.grace_s)
        final = await group.stop()
    finally:
        group.kill()
    return group, sent, cpu, final


def _gateway(ps: Procs, url: str, name: str) -> Proc:
    return ps.service("stream", url, name=name, settings=GATEWAY_SETTINGS)


async def _latency(plan: Plan, ps: Procs, url: str, stack: dict[str, Proc],
                   redis_pid: int) -> dict[str, Any]:  # fmt: skip
    gateway = _gateway(ps, url, "stream-latency")
    pids = _pids(stack, gateway, redis_pid)
    group, sent, cpu, final = await _latency_pass(plan, ps, gateway, stack, pids,
                                                  plan.latency_clients)  # fmt: skip
    summary = stats.latency_summary(group.latencies())
    stages = _stages(url, sent.sent) | _gateway_stage(gateway)
    light_clients = max(1, plan.latency_clients // 10)
    light, _, light_cpu, _ = await _latency_pass(plan, ps, gateway, stack, pids, light_clients,
                                                 warm=False)  # fmt: skip
    light_summary = stats.latency_summary(light.latencies())
    expected = sent.ok * group.connected
    details = {
        "clients": group.connected, "receiver_processes": group.processes,
        "rate": plan.latency_rate, "seconds": plan.duration_s, "sender": sent.as_dict(),
        "expected_deliveries": expected, "deliveries": final["frames"],
        "dropped_clients": final["closed"], "latency": summary, "cpu_share": cpu,
        "stages": stages,
        "light": {"clients": light.connected, "latency": light_summary, "cpu_share": light_cpu},
    }  # fmt: skip
    if light_summary.get("count"):
        details["notes"] = [
            f"Diagnostic, same run and stack: with {light.connected} clients instead of "
            f"{group.connected} (a tenth of the deliveries), p50 {light_summary['p50_ms']:.2f} ms, "
            f"p99 {light_summary['p99_ms']:.2f} ms; CPU (cores): "
            + ", ".join(f"{k} {v:.2f}" for k, v in light_cpu.items())
        ]
    if summary.get("count", 0) == 0:
        raise RuntimeError(f"no event reached the SSE clients ({details})")
    p50, p99 = summary["p50_ms"], summary["p99_ms"]
    status = stats.verdict([p50 < 5, p99 < 25, final["frames"] >= expected * 0.999])
    if plan.latency_clients != 100 or plan.latency_rate != 1000:
        status = "reported"
    return figure(*LATENCY[:2], unit="ms", value=p99, target=LATENCY[3], status=status,
                  details=details) | {
        "summary": f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {summary['max_ms']:.1f} ms "
                   f"({group.connected} clients, {sent.as_dict()['rate']:.0f} events/s)"}  # fmt: skip


async def _hold(
    proc: Proc, plan: Plan, workdir: Any, warm: Any = None
) -> tuple[ReceiverGroup, dict[str, Any]]:
    """Connect `fanout_clients` idle SSE clients to `proc`; its RSS per client at rest.

    One client connects first (and `warm()` may run), so code paths and buffers a first
    connection allocates are in the baseline, not divided among the clients."""
    first = ReceiverGroup(proc.port or 0, 1, 1, mode="count", workdir=workdir)
    await first.start()
    if warm is not None:
        warm()
    await asyncio.sleep(plan.grace_s / 2)
    await first.stop()
    await asyncio.sleep(plan.grace_s / 2)
    rss_before = proc.rss()
    group = ReceiverGroup(proc.port or 0, plan.fanout_clients, plan.fanout_receivers,
                          mode="count", workdir=workdir)  # fmt: skip
    t0 = time.perf_counter()
    try:
        await group.start(timeout=300)
    except BaseException:
        group.kill()
        raise
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(plan.idle_s)  # idle: what each held connection costs at rest
    rss_after = proc.rss()
    if group.connected == 0:
        group.kill()
        raise RuntimeError(f"no SSE client connected to {proc.name} (refused {group.refused})")
    return group, {
        "clients": group.connected, "rss_before": rss_before, "rss_after": rss_after,
        "per_client_kb": round((rss_after - rss_before) / group.connected / 1024, 2),
        "connect_s": round(connect_s, 2),
    }  # fmt: skip


async def _fanout(plan: Plan, ps: Procs, url: str, stack: dict[str, Proc],
                  redis_pid: int) -> list[dict[str, Any]]:  # fmt: skip
    # The memory reference first, on its own: a bare ASGI SSE app under the same uvicorn.
    bare = ps.refapp(kind="sse")
    group, bare_mem = await _hold(bare, plan, ps.workdir)
    await group.stop()
    group.kill()
    bare.stop()
    gateway = _gateway(ps, url, "stream-fanout")
    pids = _pids(stack, gateway, redis_pid)
    ingest = stack["ingest"]
    group, mem = await _hold(
        gateway,
        plan,
        ps.workdir,
        lambda: expect_ok(ingest, pacer.PATH, fill_ids(single_template())),
    )
    try:
        steps = [await _step(plan, group, ingest, pids, offered)
                 for offered in plan.fanout_offered]  # fmt: skip
        prof = await _profile(plan, ps, group, ingest, pids, gateway) if plan.profile else None
        final = await group.stop()
    finally:
        group.kill()
    clients = group.connected
    per_client_kb = mem["per_client_kb"]
    memory = figure(*MEMORY[:2], unit="KB", value=per_client_kb, target=MEMORY[3],
                    reference=bare_mem["per_client_kb"],
                    reference_name="bare uvicorn ASGI SSE app",
                    ratio=stats.ratio(per_client_kb, bare_mem["per_client_kb"]),
                    status=stats.verdict([per_client_kb < 20]),
                    details={**mem, "reference": bare_mem})  # fmt: skip
    clean = [s for s in steps if s["complete"] >= 0.999 and s["dropped"] == 0]
    best = max(clean or steps, key=lambda s: s["deliveries_per_s"])
    value = best["deliveries_per_s"]
    if not value:
        problem = RuntimeError(f"no event reached the {clients} SSE clients: {steps}"[:1500])
        return [failed(*FANOUT, problem), memory]
    details = {"clients": clients, "requested_clients": plan.fanout_clients,
               "refused": group.refused, "connect_errors": group.errors,
               "connect_s": mem["connect_s"], "receiver_processes": group.processes,
               "steps": steps, "dropped_total": final["closed"],
               "best_step_clean": bool(clean)}  # fmt: skip
    if prof is not None:
        details["profile"] = prof
    status = stats.verdict([clients >= 5000, value >= 100_000, bool(clean)])
    fan = figure(*FANOUT[:2], unit="deliveries/s", value=value, target=FANOUT[3], status=status,
                 details=details) | {
        "summary": f"{value:,.0f} deliveries/s to {clients:,} clients held "
                   f"({best['events_per_s']:.0f} events/s, {best['complete']:.1%} delivered)"}  # fmt: skip
    if clients < 5000 and value >= 100_000 and clean and clients == plan.fanout_clients:
        fan["status"] = "met"
        fan["verdict_note"] = f"{clients:,} clients in {plan.mode} mode; FULL holds 5,000"
    return [fan, memory]


async def _step(plan: Plan, group: ReceiverGroup, ingest: Proc, pids: dict[str, int],
                offered: int) -> dict[str, Any]:  # fmt: skip
    """Offer `offered` deliveries/s for `duration_s`, then wait until every frame arrived (or
    arrivals stop): delivered/s = frames ÷ (first send → last frame received)."""
    clients = group.connected
    rate = max(1.0, offered / clients)
    per_post = max(1, math.ceil(rate / 200))  # at most ~200 POSTs/s: the sender stays light
    start = await group.command("snap")
    before = _cpu(pids, group)
    t0 = time.time()
    sent = await pacer.paced(ingest.port or 0, rate=rate, duration=plan.duration_s,
                             per_post=per_post, connections=4)  # fmt: skip
    expected = sent.ok * clients
    snap = await _delivered(group, start["frames"] + expected, plan)
    cpu = _cpu_share(before, _cpu(pids, group), max(1e-3, snap["last"] - t0))
    delivered = snap["frames"] - start["frames"]
    seconds = snap["last"] - t0 if delivered else 0.0
    return {
        "offered_deliveries_per_s": offered,
        "events_per_s": round(sent.ok / sent.seconds, 1) if sent.seconds else 0,
        "deliveries_per_s": round(delivered / seconds, 1) if seconds > 0 else 0,
        "complete": round(delivered / expected, 4) if expected else 0,
        "drain_s": round(max(0.0, snap["last"] - t0 - sent.seconds), 2),
        "dropped": snap["closed"] - start["closed"],
        "sender": sent.as_dict(),
        "cpu_share": cpu,
    }


async def _profile(plan: Plan, ps: Procs, group: ReceiverGroup, ingest: Proc,
                   pids: dict[str, int], gateway: Proc) -> dict[str, Any]:  # fmt: skip
    """The highest step once more, with py-spy on the gateway."""
    out = ps.workdir / "profile-gateway.txt"
    spy = profile.start(gateway.pid, plan.duration_s, out)
    step = await _step(plan, group, ingest, pids, max(plan.fanout_offered))
    return profile.finish(spy, out, plan.duration_s) | {"step": step}


async def _delivered(group: ReceiverGroup, target: int, plan: Plan) -> dict[str, Any]:
    """Poll until `target` frames arrived in total, or none arrived for `grace_s`."""
    snap = await group.command("snap")
    deadline = time.monotonic() + max(10.0, plan.duration_s * 2)
    while snap["frames"] < target and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        snap = await group.command("snap")
        if snap["frames"] < target and snap["t"] - snap["last"] > plan.grace_s:
            break
    return snap


def _stages(url: str, count: int) -> dict[str, Any]:
    """Where the time goes, from the stream entry ids (ms clocks of Redis on this host):
    send → XADD to the events stream (ingest), send → XADD to the feed (+ aggregator)."""
    r = redis_client(url)
    out: dict[str, Any] = {}
    try:
        for label, key in (("post_to_events_stream", keys.events_stream(0)),
                           ("post_to_feed", keys.feed_stream(0))):  # fmt: skip
            delays = []
            for entry_id, fields in r.xrevrange(key, count=count + 1000):
                for value in fields.values():
                    found = STAMP.search(value)
                    if found:
                        ms = int(entry_id.split(b"-")[0])
                        delays.append(ms * 1_000_000 - int(found.group(1)))
                        break
            if delays:
                out[label] = stats.latency_summary(delays)
    finally:
        r.close()
    return out


def _gateway_stage(gateway: Proc) -> dict[str, Any]:
    """The gateway's own share, from its `llmwatch_sse_fanout_latency_seconds` histogram: of
    the frames written, the fraction written within each bound of their feed entry's id time
    (millisecond resolution, so up to 1 ms high). The rest of a delivery is the receivers'."""
    try:
        with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError as exc:
        return {"feed_to_socket": {"error": str(exc)}}
    buckets: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "llmwatch_sse_fanout_latency_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets[sample.labels["le"]] = sample.value
    total = buckets.get("+Inf", 0.0)
    if not total:
        return {}
    shares = {f"within_{float(le) * 1000:g}ms": round(n / total, 4)
              for le, n in buckets.items() if le != "+Inf" and float(le) <= 0.025}  # fmt: skip
    return {"feed_to_socket": {"writes": int(total), **shares}}


def _pids(stack: dict[str, Proc], gateway: Proc, redis_pid: int) -> dict[str, int]:
    return {**{name: p.pid for name, p in stack.items()}, "stream": gateway.pid,
            "redis": redis_pid}  # fmt: skip


def _cpu(pids: dict[str, int], group: ReceiverGroup) -> dict[str, float]:
    out = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out["receivers"] = group.cpu_seconds()
    return out


def _cpu_share(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Share of one core each process used during the window (1.0 = a whole core)."""
    if seconds <= 0:
        return {}
    return {k: round((after[k] - before.get(k, 0.0)) / seconds, 2) for k in after}
