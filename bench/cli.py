"""`python -m bench [--full] [--quick] [--only GROUPS] [--profile]`: run, then write the JSON and
BENCHMARKS.md. Each figure group starts its own servers and stops them, whatever happens."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import hardware, report
from bench.plan import make_plan
from shared.redis_server import RedisServerNotFound, find_redis_server

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ["ingest", "aggregator", "sse", "growth", "horizontal", "shards"]
SCHEMA = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="full sizes (takes longer)")
    mode.add_argument("--quick", action="store_true", help="quick sizes (default)")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness only")
    p.add_argument("--only", help=f"comma-separated groups: {','.join(GROUPS)}")
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a py-spy pass per server under test (default: on, except --smoke)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--keep-workdir", action="store_true", help="keep logs and data for a look")
    p.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rewrite the markdown from the JSON (after editing bench/notes.py)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        _write(args.markdown, report.render(json.loads(args.out.read_text())))
        _log(f"wrote {args.markdown} from {args.out}")
        return 0
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    groups = args.only.split(",") if args.only else GROUPS
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        print(f"unknown group(s) {unknown}; choose from {GROUPS}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="llmwatch-bench-"))
    profile = args.profile if args.profile is not None else mode != "smoke"
    plan = make_plan(mode, workdir, profile=profile)
    try:
        redis_binary: str | None = find_redis_server()
    except RedisServerNotFound:
        redis_binary = None
    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": mode,
        "command": _command(mode, args),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware.describe(redis_binary),
        "figures": {},
    }
    try:
        for group in groups:
            _log(f"== {group} ({mode})")
            module = importlib.import_module(f"bench.figures.{group}")
            t0 = time.monotonic()
            for fig in module.run(plan):
                fig["mode"] = mode
                fig["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                results["figures"][fig["name"]] = fig
                _log(f"   {fig['name']}: {fig['status']} value={fig.get('value')} "
                     f"ref={fig.get('reference')} ratio={fig.get('ratio')} "
                     f"{fig.get('error', '')[:200]}")  # fmt: skip
            _log(f"   ({time.monotonic() - t0:.0f} s)")
    finally:
        if args.keep_workdir:
            _log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["duration_s"] = round(time.monotonic() - started)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.only and args.out.exists():
        results = _merge(json.loads(args.out.read_text()), results)
    _write(args.out, json.dumps(results, indent=2, sort_keys=False) + "\n")
    _write(args.markdown, report.render(results))
    _log(f"wrote {args.out} and {args.markdown} in {results['duration_s']} s")
    return 0


def _merge(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`--only` replaces its figures in the last full results and keeps the others."""
    if previous.get("schema") != SCHEMA:
        return new
    figures = dict(previous.get("figures", {}))
    figures.update(new["figures"])
    return {**new, "figures": figures, "merged": True}


def _command(mode: str, args: argparse.Namespace) -> str:
    base = {"quick": "make bench", "full": "make bench FULL=1",
            "smoke": "python -m bench --smoke"}[mode]  # fmt: skip
    if args.only:
        base = f"python -m bench{' --full' if mode == 'full' else ''} --only {args.only}"
    return base + {True: " --profile", False: " --no-profile", None: ""}[args.profile]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
