"""Ingest throughput, side by side with its references, and ingest RSS under that load.

- single: wrk POSTs one event per request to `llmwatch serve ingest` and to the bare uvicorn app
  (bench/refapp.py), same wrk settings, alternating; ratio of req/s.
- batch: wrk POSTs 100-event batches to ingest; the reference XADDs the very events ingest
  stored (read back from the stream) in redis-py pipelines of 100 from one process; ratio of
  events/s.
- memory: peak RSS of the ingest process during both loads (psutil, every 100 ms).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson

from bench import bodies, profile, stats, wrk
from bench.figures.common import (
    events_stream,
    expect_ok,
    failed,
    figure,
    fill_ids,
    medians,
    redis_client,
    require_clean,
    write_body,
)  # fmt: skip
from bench.plan import Plan
from bench.procs import (
    ROOT,
    CpuMeter,
    Proc,
    Procs,
    RssSampler,
    ServiceUnavailable,
    procs,
    ready,
)  # fmt: skip
from shared import keys

PATH = "/api/open-wrapper"
SINGLE = ("ingest_single", "ingest, single-event POSTs, req/s, 1 worker", "req/s", "ratio ≥ 0.6")
BATCH = ("ingest_batch", "ingest, 100-event batches, events/s", "events/s", "ratio ≥ 0.5")
MEMORY = ("ingest_rss", "ingest RSS under load", "MB", "< 120 MB")
BATCH_SIZE = 100
XADD_CONCURRENCY = 4
SETTLE_S = 0.5  # requests wrk left in flight finish landing before the stream is counted/reset


def run(plan: Plan) -> list[dict[str, Any]]:
    workdir = plan.workdir / "ingest"
    with procs(workdir) as ps:
        server = ps.redis()
        r = redis_client(server.url)
        ref = ps.refapp(wait=False)
        framework = ps.refapp(kind="fastapi", wait=False)
        front: Proc | None = ps.refapp(kind="fastfront", wait=False,
                                       env={"REDIS_URL": server.url})  # fmt: skip
        try:
            ingest: Proc | None = ps.service("ingest", server.url, wait=False)
            ready(ref, framework, ingest)
            expect_ok(ingest, PATH, fill_ids(bodies.single_template()))
        except ServiceUnavailable as exc:
            ingest, missing = None, exc
        front = _experiment(front)
        peak_rss: list[int] = []
        out: list[dict[str, Any]] = []
        for fn, spec in ((_single, SINGLE), (_batch, BATCH)):
            try:
                if fn is _single:
                    out.append(_single(plan, ps, ref, ingest, r, peak_rss, framework, front))
                else:
                    out.append(_batch(plan, ps, ref, ingest, r, peak_rss))
            except Exception as exc:  # noqa: BLE001 - one figure's failure must not stop the run
                out.append(failed(*spec, exc))
            r.delete(events_stream())
        if ingest is None:
            out = [dict(f, status="skipped", error=f"ingest unavailable: {missing}")
                   if f["status"] != "error" else f for f in out]  # fmt: skip
            out.append(failed(*MEMORY, missing))
        else:
            out.append(_memory(peak_rss))
        r.close()
    return out


def _experiment(front: Proc | None) -> Proc | None:
    """The raw-ASGI-front experiment, or None when it does not start (it uses internals)."""
    assert front is not None
    try:
        ready(front)
        expect_ok(front, PATH, fill_ids(bodies.single_template()))
    except ServiceUnavailable:
        front.stop()
        return None
    return front


def _single(plan: Plan, ps: Procs, ref: Proc, ingest: Proc | None, r: Any,
            peak_rss: list[int], framework: Proc, front: Proc | None) -> dict[str, Any]:  # fmt: skip
    body = write_body(ps.workdir, "single.json", bodies.single_template())
    common = {"workdir": ps.workdir, "connections": plan.wrk_connections, "body_file": body}
    if plan.warmup_s:
        for url in (f"{ref.url}/", f"{framework.url}/", *([ingest.url + PATH] if ingest else [])):
            wrk.run(url, duration_s=plan.warmup_s, run_id="warm", **common)
        time.sleep(SETTLE_S)
    refs, ours, rounds, fastapi_rps, front_rps = [], [], [], [], []
    for i in range(plan.rounds):
        a = wrk.run(f"{ref.url}/", duration_s=plan.duration_s, run_id=f"r{i}", **common)
        require_clean(a, "reference")
        refs.append(a.rps)
        f = wrk.run(f"{framework.url}/", duration_s=plan.duration_s, run_id=f"f{i}", **common)
        require_clean(f, "FastAPI one-route app")
        fastapi_rps.append(f.rps)
        entry: dict[str, Any] = {"reference": a.as_dict(), "fastapi_one_route": f.as_dict()}
        if front is not None:
            x = wrk.run(front.url + PATH, duration_s=plan.duration_s, run_id=f"x{i}", **common)
            if x.error_count == 0:
                front_rps.append(x.rps)
            entry["raw_asgi_front"] = x.as_dict()
        if ingest:
            r.delete(events_stream())
            with RssSampler(ingest.pid) as rss, CpuMeter(_pids(ingest, r)) as cpu:
                b = wrk.run(ingest.url + PATH, duration_s=plan.duration_s, run_id=f"s{i}", **common)
            peak_rss.append(rss.peak)
            time.sleep(SETTLE_S)
            require_clean(b, "ingest")
            ours.append(b.rps)
            entry.update(ingest=b.as_dict(), stored=r.xlen(events_stream()), cpu_share=cpu.shares)
        rounds.append(entry)
    details: dict[str, Any] = {
        "wrk": f"-t1 -c{plan.wrk_connections} -d{plan.duration_s}s",
        "event_bytes": len(bodies.single_template()),
        "fastapi_one_route_rps": round(medians(fastapi_rps), 1),
        "rounds": rounds,
    }
    if ours and fastapi_rps:
        fw = medians(fastapi_rps)
        details["notes"] = [
            (
                f'Diagnostic, same run: a FastAPI app with one POST route answering {{"ok":true}} '
                f"does {fw:,.0f} req/s ({stats.ratio(fw, medians(refs))} of the bare app); ingest "
                f"does {stats.ratio(medians(ours), fw)} of that."
            )
        ]
    if ours and front_rps:
        x = medians(front_rps)
        details["raw_asgi_front_rps"] = round(x, 1)
        details.setdefault("notes", []).append(
            f"Experiment, same run: ingest's own webhook handler behind a raw ASGI front "
            f"(bench/fastfront.py, no FastAPI routing or middleware) does {x:,.0f} req/s: "
            f"{stats.ratio(x, medians(ours))}x the service, {stats.ratio(x, medians(refs))} of "
            "the bare app."
        )
    if ingest and plan.profile:
        details["profile"] = _profile(plan, ps, ingest, body)
    return _ratio_figure(SINGLE, ours, refs, 0.6, "bare uvicorn ASGI app", details)


def _batch(plan: Plan, ps: Procs, ref: Proc, ingest: Proc | None, r: Any,
           peak_rss: list[int]) -> dict[str, Any]:  # fmt: skip
    template = bodies.batch_template(BATCH_SIZE)
    body = write_body(ps.workdir, "batch.json", template)
    events = _stored_events(ingest, r, template)
    events_file = write_body(ps.workdir, "events.json",
                             orjson.dumps([e.decode() for e in events]))  # fmt: skip
    common = {"workdir": ps.workdir, "connections": plan.wrk_connections, "body_file": body}
    if ingest and plan.warmup_s:
        wrk.run(ingest.url + PATH, duration_s=plan.warmup_s, run_id="bwarm", **common)
        time.sleep(SETTLE_S)
    refs, ours, rounds = [], [], []
    for i in range(plan.rounds):
        r.delete(events_stream())
        with CpuMeter({"redis": _redis_pid(r)}) as cpu:
            a = _xadd(plan, r.connection_pool.connection_kwargs, events_file)
        a["cpu_share"] = cpu.shares
        refs.append(a["rate"])
        entry: dict[str, Any] = {"reference": a}
        if ingest:
            r.delete(events_stream())
            with RssSampler(ingest.pid) as rss, CpuMeter(_pids(ingest, r)) as cpu:
                b = wrk.run(ingest.url + PATH, duration_s=plan.duration_s, run_id=f"b{i}", **common)
            peak_rss.append(rss.peak)
            time.sleep(SETTLE_S)
            require_clean(b, "ingest")
            ours.append(b.rps * BATCH_SIZE)
            entry.update(ingest=b.as_dict(), events_per_s=round(b.rps * BATCH_SIZE, 1),
                         stored=r.xlen(events_stream()), cpu_share=cpu.shares)  # fmt: skip
        rounds.append(entry)
    details: dict[str, Any] = {
        "wrk": f"-t1 -c{plan.wrk_connections} -d{plan.duration_s}s",
        "batch_bytes": len(template),
        "reference_client": f"redis-py {XADD_CONCURRENCY} pipelines of {BATCH_SIZE} XADD in flight",
        "rounds": rounds,
    }
    if ingest and plan.profile:
        details["profile"] = _profile(plan, ps, ingest, body)
    return _ratio_figure(BATCH, ours, refs, 0.5, "redis-py pipelined XADD", details)


def _redis_pid(r: Any) -> int:
    return int(r.info("server")["process_id"])


def _pids(ingest: Proc, r: Any) -> dict[str, int]:
    return {"ingest": ingest.pid, "redis": _redis_pid(r)}


def _stored_events(ingest: Proc | None, r: Any, template: bytes) -> list[bytes]:
    """The events exactly as ingest stores them, so the reference XADDs the same bytes."""
    if ingest is None:
        return [orjson.dumps(e) for e in orjson.loads(fill_ids(template))["events"]]
    prefix = f"tmpl{uuid.uuid4().hex[:12]}"
    expect_ok(ingest, PATH, fill_ids(template, prefix))
    # Requests from an earlier wrk run may still be landing: keep only this request's events.
    entries = r.xrevrange(events_stream(), count=BATCH_SIZE * 20)
    stored = [fields[keys.EVENT_FIELD] for _, fields in reversed(entries)
              if prefix.encode() in fields.get(keys.EVENT_FIELD, b"")]  # fmt: skip
    if len(stored) != BATCH_SIZE:
        raise RuntimeError(f"expected {BATCH_SIZE} stored events, found {len(stored)}")
    return stored


def _xadd(plan: Plan, conn: dict[str, Any], events_file: Any) -> dict[str, Any]:
    url = f"redis://{conn['host']}:{conn['port']}/0"
    argv = [sys.executable, "-m", "bench.refclient", "xadd", url, events_stream(),
            str(events_file), "--duration", str(plan.duration_s),
            "--concurrency", str(XADD_CONCURRENCY)]  # fmt: skip
    out = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=plan.duration_s + 60, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(f"reference XADD client failed: {out.stderr[-500:]}")
    return json.loads(out.stdout)


def _profile(plan: Plan, ps: Procs, ingest: Proc, body: Any) -> dict[str, Any]:
    out = ps.workdir / f"profile-{body.stem}.txt"
    spy = profile.start(ingest.pid, plan.duration_s, out)
    wrk.run(ingest.url + PATH, workdir=ps.workdir, duration_s=plan.duration_s,
            connections=plan.wrk_connections, body_file=body, run_id="prof")  # fmt: skip
    return profile.finish(spy, out, plan.duration_s)


def _memory(peak_rss: list[int]) -> dict[str, Any]:
    peak = max(peak_rss, default=0) / 2**20
    status = stats.verdict([0 < peak < 120])
    return figure(*MEMORY[:2], unit="MB", value=peak, target=MEMORY[3], status=status,
                  details={"peak_rss_bytes_per_run": peak_rss})  # fmt: skip


def _ratio_figure(spec: tuple[str, str, str, str], ours: list[float], refs: list[float],
                  bound: float, ref_name: str, details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    name, title, unit, target = spec
    value = medians(ours) if ours else None
    reference = medians(refs)
    ratio = stats.ratio(value, reference) if value is not None else None
    details["round_ratios"] = [stats.ratio(o, r) for o, r in zip(ours, refs, strict=False)]
    status = stats.verdict([stats.at_least(ratio, bound)]) if value is not None else "skipped"
    return figure(name, title, unit=unit, value=value, reference=reference,
                  reference_name=ref_name, ratio=ratio, target=target, status=status,
                  details=details)  # fmt: skip
