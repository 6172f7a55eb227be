"""Horizontal scaling of the write path: ingest events/s (100-event batches) through nginx with
2 ingest replicas vs 1, both topologies up side by side and measured alternately.

The topologies come from the deploy engineer's local runner (`services.topology.Topology`: the
repo's deploy/nginx.conf rendered for loopback ports, `llmwatch serve` processes, a private
redis-server with deploy/redis.conf). The aggregator is paused (SIGSTOP) while wrk runs, so the
figure isolates the write path; on 2 cores, replicas, nginx, redis and wrk share the CPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from bench import bodies, stats, wrk
from bench.figures.common import failed, figure, require_clean, write_body
from bench.plan import Plan
from bench.procs import clean_env
from shared.redis_server import free_port

SPEC = ("horizontal", "horizontal: ingest events/s, 2 replicas behind nginx vs 1", "events/s",
        "report (2 cores limit it)")  # fmt: skip
PATH = "/api/open-wrapper"
BATCH = 100


def run(plan: Plan) -> list[dict[str, Any]]:
    workdir = plan.workdir / "horizontal"
    workdir.mkdir(parents=True, exist_ok=True)
    body = write_body(workdir, "batch.json", bodies.batch_template(BATCH))
    details: dict[str, Any] = {"wrk": f"-t1 -c{plan.wrk_connections} -d{plan.duration_s}s",
                               "rounds": []}  # fmt: skip
    try:
        with _topology(workdir, 1) as one, _topology(workdir, 2) as two:
            urls = {"one": one.url + PATH, "two": two.url + PATH}
            for url in urls.values() if plan.warmup_s else ():
                wrk.run(url, workdir=workdir, duration_s=plan.warmup_s,
                        connections=plan.wrk_connections,
                        body_file=body, run_id="hwarm")  # fmt: skip
            for i in range(plan.rounds):
                entry = {}
                for label, url in urls.items():
                    res = wrk.run(url, workdir=workdir, duration_s=plan.duration_s,
                                  connections=plan.wrk_connections, body_file=body,
                                  run_id=f"h{label}{i}")  # fmt: skip
                    require_clean(res, f"{label} replica(s)")
                    entry[label] = res.as_dict() | {"events_per_s": round(res.rps * BATCH, 1)}
                details["rounds"].append(entry)
    except Exception as exc:  # noqa: BLE001
        return [failed(*SPEC, exc, details)]
    one_rate = stats.median([r["one"]["events_per_s"] for r in details["rounds"]])
    two_rate = stats.median([r["two"]["events_per_s"] for r in details["rounds"]])
    return [figure(*SPEC[:2], unit="events/s", value=two_rate, reference=one_rate,
                   reference_name="1 replica behind nginx", ratio=stats.ratio(two_rate, one_rate),
                   target=SPEC[3], status="reported", details=details)]  # fmt: skip


@contextlib.contextmanager
def _topology(workdir: Any, replicas: int) -> Iterator[Any]:
    from services.topology import Topology  # the deploy engineer's runner

    env = {k: v for k, v in clean_env().items() if k.startswith("LLMWATCH_")}
    env["LLMWATCH_LOG_LEVEL"] = "warning"
    topo = Topology(run_dir=workdir / f"replicas-{replicas}",
                    replicas={"ingest": replicas, "aggregator": 1, "stream": 1, "metrics": 1},
                    port=free_port(), prometheus_port=None, env=env)  # fmt: skip
    topo.start()
    paused = [p for p in topo.of("aggregator") if p.popen is not None]
    try:
        for proc in paused:
            os.kill(proc.popen.pid, signal.SIGSTOP)
        yield topo
    finally:
        for proc in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.popen.pid, signal.SIGCONT)
        topo.stop()
