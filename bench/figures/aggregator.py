"""Aggregator throughput in one process, side by side with a bare XREADGROUP+XACK drain.

Both read the same stream of N stored events (a realistic mix: webhook sessions, a failure that
raises a notification, an LLMonitor run with a child), each with its own consumer group. The
reference (`bench.refclient drain`) does no processing. The aggregator runs as
`llmwatch serve aggregator`; the harness polls XINFO GROUPS every 20 ms and times from its first
delivered batch (so process start-up is excluded) until every event is delivered and acknowledged.
After the drain, `/api/stats` (stream gateway) must count exactly N events.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import time
from typing import Any

from bench import loader, profile, stats
from bench.bodies import BENCH_APP
from bench.figures.common import (
    command_stats,
    events_stream,
    failed,
    figure,
    redis_client,
    reset_command_stats,
)  # fmt: skip
from bench.plan import Plan
from bench.procs import (
    ROOT,
    CpuMeter,
    Proc,
    ServiceUnavailable,
    cpu_seconds,
    procs,
    request,
    wait_http,
)  # fmt: skip
from shared import keys

SPEC = ("aggregator", "aggregator events/s, 1 process", "events/s", "ratio ≥ 0.3 and ≥ 20,000/s")
REF_GROUP = "bench-drain"
POLL_S = 0.02
IDLE_LIMIT_S = 20.0  # a process that has not read one batch by then is not an aggregator (yet)


def run(plan: Plan) -> list[dict[str, Any]]:
    details: dict[str, Any] = {"events": plan.agg_events}
    with procs(plan.workdir / "aggregator") as ps:
        server = ps.redis()
        r = redis_client(server.url)
        try:
            ingest = ps.service("ingest", server.url, settings={"LLMWATCH_APPS": BENCH_APP})
            group = loader.templates(ingest, r)
            ingest.stop()
            t0 = time.perf_counter()
            ids = loader.load(r, group, plan.agg_events)
            details["load_s"] = round(time.perf_counter() - t0, 2)
            details["events"] = len(ids)
            details["stream_bytes"] = r.memory_usage(events_stream())
            redis_pid = int(r.info("server")["process_id"])
            with CpuMeter({"redis": redis_pid}) as cpu:
                reference = _drain_reference(server.url, plan)
            details["reference"] = reference | {"cpu_share": cpu.shares}
            agg = start_aggregator(ps, server.url, r)
            reset_command_stats(r)
            drained = wait_drained(agg, r, ids, {"aggregator": agg.pid, "redis": redis_pid})
            details["aggregator"] = drained
            details["redis_commands"] = command_stats(r, len(ids))
            details["stats_total"] = _stats_total(ps, server.url, len(ids), details)
            if plan.profile:
                details["profile"] = _profile(ps, agg, r, group, plan)
        except Exception as exc:  # noqa: BLE001 - reported in the figure, the run goes on
            return [failed(*SPEC, exc, details)]
        finally:
            r.close()
    value, ref = drained["rate"], reference["rate"]
    ratio = stats.ratio(value, ref)
    status = stats.verdict([stats.at_least(ratio, 0.3), value >= 20_000])
    return [figure(SPEC[0], SPEC[1], unit=SPEC[2], value=value, reference=ref,
                   reference_name="XREADGROUP+XACK drain, no processing", ratio=ratio,
                   target=SPEC[3], status=status, details=details)]  # fmt: skip


def _drain_reference(url: str, plan: Plan) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.refclient", "drain", url, events_stream(), REF_GROUP]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"reference drain failed: {out.stderr[-500:]}")
    return json.loads(out.stdout)


def start_aggregator(ps: Any, url: str, r: Any) -> Proc:
    # The group starts at 0 so the aggregator reads the stored events whatever id it would
    # create its group at; BUSYGROUP is what a correct aggregator expects on restart anyway.
    try:
        r.xgroup_create(events_stream(), keys.AGGREGATOR_GROUP, id="0", mkstream=True)
    except Exception as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    return ps.service("aggregator", url, wait=False)


def _group(r: Any) -> dict[str, Any] | None:
    for info in r.xinfo_groups(events_stream()):
        if info["name"] in (keys.AGGREGATOR_GROUP, keys.AGGREGATOR_GROUP.encode()):
            return info
    return None


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


def wait_drained(agg: Proc, r: Any, ids: list[bytes],
                 pids: dict[str, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """Poll the aggregator's group until every id is delivered and acknowledged: its rate from
    the first delivered batch on, and (given `pids`) each process's CPU share meanwhile."""
    total = len(ids)
    ordered = [_stream_id(i) for i in ids]
    started = time.monotonic()
    deadline = started + max(90.0, total / 1000)
    first: tuple[float, int] | None = None
    cpu_before: dict[str, float] = {}
    info: dict[str, Any] | None = None
    done = 0
    while time.monotonic() < deadline:
        if first is None and time.monotonic() - started > IDLE_LIMIT_S:
            raise ServiceUnavailable(f"aggregator consumed nothing in {IDLE_LIMIT_S:.0f} s")
        if not agg.alive():
            raise ServiceUnavailable(f"aggregator exited {agg.popen.returncode}: {agg.log_tail()}")
        now = time.perf_counter()
        info = _group(r)
        if info is not None:
            done = bisect.bisect_right(ordered, _stream_id(info["last-delivered-id"]))
            if first is None and done > 0:
                first = (now, done)
                cpu_before = {k: cpu_seconds(p) for k, p in (pids or {}).items()}
            if done >= total and info["pending"] == 0:
                assert first is not None
                seconds = now - first[0]
                counted = total - first[1]
                rate = counted / seconds if seconds > 0 else 0.0
                cpu = {k: round((cpu_seconds(p) - cpu_before[k]) / seconds, 2)
                       for k, p in (pids or {}).items()} if seconds > 0 else {}  # fmt: skip
                return {"events": total, "seconds": round(seconds, 4), "rate": round(rate, 1),
                        "first_seen": first[1], "cpu_share": cpu}  # fmt: skip
        time.sleep(POLL_S)
    state = f"delivered {done}/{total}, pending {info['pending']}" if info else "no group"
    raise RuntimeError(f"aggregator did not drain {total} events in time ({state}): "
                       f"{agg.log_tail(8)}")  # fmt: skip


def _stats_total(ps: Any, url: str, expected: int, details: dict[str, Any]) -> int | None:
    """Exactly-once check through the read API; None when the gateway is not available."""
    try:
        gateway = ps.service("stream", url)
    except ServiceUnavailable as exc:
        details.setdefault("notes", []).append(f"stats not checked: {str(exc)[:200]}")
        return None
    status, body = request(gateway.port or 0, "GET", "/api/stats")
    gateway.stop()
    if status != 200:
        details.setdefault("notes", []).append(f"/api/stats answered {status}")
        return None
    total = int(json.loads(body).get("total", -1))
    if total != expected:
        details.setdefault("notes", []).append(
            f"/api/stats total {total} != {expected} events stored (exactly-once check failed)"
        )
    return total


def _profile(
    ps: Any, agg: Proc, r: Any, group: list[loader.Template], plan: Plan
) -> dict[str, Any]:
    """A second batch of new events, drained under py-spy."""
    out = ps.workdir / "profile-aggregator.txt"
    count = max(1000, plan.agg_events // 4)
    ids = loader.load(r, group, count, run="prof")
    seconds = max(2.0, min(30.0, count / 15_000))  # about the drain: idle samples say little
    spy = profile.start(agg.pid, seconds, out)
    wait_http(agg, "/healthz", 5)
    result = profile.finish(spy, out, seconds)
    wait_drained(agg, r, ids)
    return result
