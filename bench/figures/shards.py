"""Scaling Redis out: events/s through one Redis vs a 3-master Redis Cluster, same partitions.

Two stacks side by side, both with `LLMWATCH_PARTITIONS=6`: one redis-server, and a local
3-master cluster (`EmbeddedCluster`: 2 partitions per master), from the same redis-server binary
with AOF on. The two sides alternate within each round, so the machine's noise hits both alike.

- ingest: wrk POSTs 100-event batches (a fresh session id per event, so events spread over every
  partition) to `llmwatch serve ingest`, as the batch figure does; events/s = requests/s × 100,
  and the events stored (XLEN over every partition) are read back.
- aggregator: the same N stored events (template copies, each XADDed to the partition ingest
  would pick) are loaded on both sides; one `llmwatch serve aggregator` process drains each in
  turn, timed from its first delivered batch until every partition's group has delivered and
  acknowledged them all; `/api/stats` then counts them (when the gateway runs there).

During each run psutil measures the CPU share of the service process and of every
redis-server: that says what bounds the figure on this machine.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import redis as sync_redis

from bench import bodies, loader, stats, wrk
from bench.bodies import BENCH_APP
from bench.figures.common import (
    expect_ok,
    failed,
    figure,
    fill_ids,
    redis_client,
    require_clean,
    write_body,
)
from bench.plan import Plan
from bench.procs import (
    CpuMeter,
    Proc,
    Procs,
    ServiceUnavailable,
    cpu_seconds,
    procs,
    ready,
    request,
)
from shared import keys
from shared.redis import plain_url

PATH = "/api/open-wrapper"
BATCH = 100
SETTLE_S = 0.5
POLL_S = 0.05
IDLE_LIMIT_S = 20.0
TARGET = "report: ratio and what bounds it"


def _specs(plan: Plan) -> tuple[tuple[str, str, str, str], tuple[str, str, str, str]]:
    shape = f"{plan.shard_masters}-master cluster vs 1 Redis, {plan.shard_partitions} partitions"
    return (("shards_ingest", f"shards: ingest events/s, 100-event batches, {shape}", "events/s", TARGET),
            ("shards_aggregator", f"shards: aggregator events/s, 1 process, {shape}", "events/s",
             TARGET))  # fmt: skip


@dataclass
class Side:
    label: str  # "single" or "cluster"
    url: str
    client: Any  # redis.Redis or redis.RedisCluster (sync)
    redis_pids: dict[str, int]

    def streams(self, partitions: int) -> list[str]:
        return [keys.events_stream(p) for p in range(partitions)]

    def flush(self) -> None:
        if isinstance(self.client, sync_redis.RedisCluster):
            self.client.flushall(target_nodes=sync_redis.RedisCluster.PRIMARIES)
        else:
            self.client.flushall()

    def stored(self, partitions: int) -> int:
        return sum(int(self.client.xlen(s)) for s in self.streams(partitions))


def run(plan: Plan) -> list[dict[str, Any]]:
    ingest_spec, agg_spec = _specs(plan)
    ingest_details: dict[str, Any] = {"wrk": f"-t1 -c{plan.wrk_connections} -d{plan.duration_s}s",
                                      "rounds": []}  # fmt: skip
    agg_details: dict[str, Any] = {"events": plan.shard_events, "rounds": []}
    with procs(plan.workdir / "shards") as ps:
        try:
            sides = _sides(ps, plan)
        except Exception as exc:  # noqa: BLE001 - reported in the figures
            return [failed(*ingest_spec, exc, ingest_details), failed(*agg_spec, exc, agg_details)]
        try:
            group: list[loader.Template] | None = None
            ingests = {s.label: _service(ps, "ingest", s, plan) for s in sides}
            ready(*ingests.values())
            group = loader.templates(ingests["single"], sides[0].client, plan.shard_partitions)
            out = [_ingest(plan, ps, sides, ingests, ingest_spec, ingest_details)]
        except Exception as exc:  # noqa: BLE001
            out = [failed(*ingest_spec, exc, ingest_details)]
        finally:
            for proc in ps.started:
                proc.stop()  # the drains below run with nothing else of ours alive
        try:
            if group is None:
                raise ServiceUnavailable("no ingest to make the aggregator's events with")
            out.append(_aggregator(plan, ps, sides, group, agg_spec, agg_details))
        except Exception as exc:  # noqa: BLE001
            out.append(failed(*agg_spec, exc, agg_details))
        finally:
            for side in sides:
                side.client.close()
    return out


def _sides(ps: Procs, plan: Plan) -> list[Side]:
    single = ps.redis("redis-single")
    cluster = ps.cluster(plan.shard_masters)
    assert single.process is not None
    return [
        Side("single", single.url, redis_client(single.url), {"redis": single.process.pid}),
        Side("cluster", cluster.url,
             sync_redis.RedisCluster.from_url(plain_url(cluster.url), socket_timeout=30),
             {f"redis-{i + 1}": n.process.pid for i, n in enumerate(cluster.primaries) if n.process}),
    ]  # fmt: skip


def _service(ps: Procs, target: str, side: Side, plan: Plan, name: str = "") -> Proc:
    settings = {"LLMWATCH_PARTITIONS": str(plan.shard_partitions), "LLMWATCH_APPS": BENCH_APP}
    return ps.service(target, side.url, name=name or f"{target}-{side.label}", settings=settings,
                      wait=False)  # fmt: skip


def _ingest(plan: Plan, ps: Procs, sides: list[Side], ingests: dict[str, Proc],
            spec: tuple[str, str, str, str], details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    body = write_body(ps.workdir, "shards-batch.json", bodies.batch_template(BATCH))
    common = {"workdir": ps.workdir, "connections": plan.wrk_connections, "body_file": body}
    for side in sides:
        expect_ok(ingests[side.label], PATH, fill_ids(bodies.batch_template(BATCH)))
        if plan.warmup_s:
            wrk.run(ingests[side.label].url + PATH, duration_s=plan.warmup_s,
                    run_id=f"w{side.label}", **common)  # fmt: skip
    time.sleep(SETTLE_S)
    for i in range(plan.rounds):
        entry: dict[str, Any] = {}
        details["rounds"].append(entry)  # filled side by side: a failed side keeps the other's
        for side in sides:
            for stream in side.streams(plan.shard_partitions):
                side.client.delete(stream)
            ingest = ingests[side.label]
            with CpuMeter({"ingest": ingest.pid, **side.redis_pids}) as cpu:
                res = wrk.run(ingest.url + PATH, duration_s=plan.duration_s,
                              run_id=f"{side.label[0]}{i}", **common)  # fmt: skip
            time.sleep(SETTLE_S)
            require_clean(res, f"ingest on {side.label}")
            stored = side.stored(plan.shard_partitions)
            acknowledged = (res.requests - res.errors.get("status", 0)) * BATCH
            if stored < acknowledged:  # every acknowledged event must be in Redis
                raise RuntimeError(f"{side.label}: {acknowledged} events acknowledged, "
                                   f"{stored} stored")  # fmt: skip
            entry[side.label] = res.as_dict() | {
                "rate": round(res.rps * BATCH, 1),
                "cpu_share": cpu.shares,
                "stored": stored,
            }
    return _figure(spec, details, "ingest")


def _aggregator(plan: Plan, ps: Procs, sides: list[Side], group: list[loader.Template],
                spec: tuple[str, str, str, str], details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    partitions = plan.shard_partitions
    for i in range(plan.rounds):
        entry: dict[str, Any] = {}
        details["rounds"].append(entry)
        for side in sides:
            side.flush()  # nothing of the ingest runs or the last round: every drain starts alike
            ids = loader.load_partitioned(side.client, group, plan.shard_events, partitions,
                                          run=f"{side.label[0]}{i}")  # fmt: skip
            for stream in side.streams(partitions):
                side.client.xgroup_create(stream, keys.AGGREGATOR_GROUP, id="0", mkstream=True)
            agg = _service(ps, "aggregator", side, plan, name=f"aggregator-{side.label}-{i}")
            try:
                entry[side.label] = _drained(agg, side, ids, partitions)
                if i == plan.rounds - 1:
                    counted = _stats_total(ps, side, plan, details)
                    entry[side.label]["stats_total"] = counted
                    if counted is not None and counted != entry[side.label]["events"]:
                        details.setdefault("notes", []).append(
                            f"{side.label}: /api/stats total {counted} != "
                            f"{entry[side.label]['events']} events stored (exactly-once check failed)"
                        )
            finally:
                agg.stop()
    return _figure(spec, details, "aggregator")


def _drained(agg: Proc, side: Side, ids: dict[int, list[bytes]], partitions: int) -> dict[str, Any]:
    """Poll every partition's group until all `ids` are delivered and acknowledged: the rate
    from the first delivered batch on, and each process's CPU share meanwhile."""
    ordered = {p: [_stream_id(i) for i in ids[p]] for p in range(partitions)}
    total = sum(len(v) for v in ordered.values())
    pids = {"aggregator": agg.pid, **side.redis_pids}
    started = time.monotonic()
    deadline = started + max(90.0, total / 1000)
    first: tuple[float, int, dict[str, float]] | None = None
    done = pending = 0
    while time.monotonic() < deadline:
        if not agg.alive():
            raise ServiceUnavailable(f"aggregator exited {agg.popen.returncode}: {agg.log_tail()}")
        if first is None and time.monotonic() - started > IDLE_LIMIT_S:
            raise ServiceUnavailable(f"aggregator consumed nothing in {IDLE_LIMIT_S:.0f} s: "
                                     f"{agg.log_tail(8)}")  # fmt: skip
        now = time.perf_counter()
        done, pending = _progress(side, ordered)
        if first is None and done > 0:
            first = (now, done, {k: cpu_seconds(p) for k, p in pids.items()})
        if first is not None and done >= total and pending == 0:
            seconds = now - first[0]
            if seconds <= 0:
                break
            return {"events": total, "seconds": round(seconds, 4),
                    "rate": round((total - first[1]) / seconds, 1),
                    "cpu_share": {k: round((cpu_seconds(p) - first[2][k]) / seconds, 2)
                                  for k, p in pids.items()}}  # fmt: skip
        time.sleep(POLL_S)
    raise RuntimeError(f"aggregator on {side.label} did not drain {total} events in time "
                       f"(delivered {done}, pending {pending}): {agg.log_tail(8)}")  # fmt: skip


def _progress(side: Side, ordered: dict[int, list[tuple[int, int]]]) -> tuple[int, int]:
    pipe = side.client.pipeline(transaction=False)
    for p in ordered:
        pipe.xinfo_groups(keys.events_stream(p))
    done = pending = 0
    for p, groups in zip(ordered, pipe.execute(), strict=True):
        for info in groups:
            if info["name"] in (keys.AGGREGATOR_GROUP, keys.AGGREGATOR_GROUP.encode()):
                done += bisect.bisect_right(ordered[p], _stream_id(info["last-delivered-id"]))
                pending += int(info["pending"])
    return done, pending


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _stats_total(ps: Procs, side: Side, plan: Plan, details: dict[str, Any]) -> int | None:
    """Exactly-once check through the read API; None (with a note) when no gateway runs there."""
    gateway = _service(ps, "stream", side, plan, name=f"stream-{side.label}")
    try:
        ready(gateway, timeout=15)
        status, body = request(gateway.port or 0, "GET", "/api/stats")
    except ServiceUnavailable as exc:
        details.setdefault("notes", []).append(f"{side.label}: stats not checked: {str(exc)[:160]}")
        return None
    finally:
        with contextlib.suppress(Exception):
            gateway.stop()
    if status != 200:
        details.setdefault("notes", []).append(f"{side.label}: /api/stats answered {status}")
        return None
    return int(json.loads(body).get("total", -1))


def _figure(
    spec: tuple[str, str, str, str], details: dict[str, Any], worker: str
) -> dict[str, Any]:
    rounds = details["rounds"]
    cluster = stats.median([r["cluster"]["rate"] for r in rounds])
    single = stats.median([r["single"]["rate"] for r in rounds])
    details["worker"] = worker
    return figure(spec[0], spec[1], unit=spec[2], value=cluster, reference=single,
                  reference_name="1 Redis, same partitions", ratio=stats.ratio(cluster, single),
                  target=spec[3], status="reported", details=details)  # fmt: skip
