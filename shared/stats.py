"""Stats as counters: the field names the aggregator increments and the `/api/stats` shape the
read side builds from them. Pure; the writer and the reader share this one definition.

Each partition keeps one Redis hash of integer counters (`keys.stats_key(N)`); every field is a
sum, so partitions merge by adding and a batch pre-aggregates to one HINCRBY per field:

| field | meaning |
|---|---|
| `total` | events applied |
| `et:<event_type>` `st:<status>` `src:<source>` | events by value |
| `tok:p` `tok:c` | prompt / completion tokens |
| `cost` | cost in nano-USD (only priced usage) |
| `runs:<running|completed|failed>` | runs currently in that state (moved by deltas) |
| `m:<model>|<n|err|tp|tc|cost|priced|dn|ds|h<i>>` | per model: events, errors, tokens, cost, priced usages, durations (count, sum ms, histogram bucket i) |

`since` (epoch ms of the first applied event) is set once with HSETNX.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from shared import histogram
from shared.times import rfc3339

TOTAL = "total"
TOKENS_PROMPT = "tok:p"
TOKENS_COMPLETION = "tok:c"
COST = "cost"
SINCE = "since"
RUN_STATES = ("running", "completed", "failed")
NANOS = 1_000_000_000


def event_type(value: str) -> str:
    return f"et:{value}"


def status(value: str) -> str:
    return f"st:{value}"


def source(value: str) -> str:
    return f"src:{value}"


def runs(state: str) -> str:
    return f"runs:{state}"


def model(name: str, part: str) -> str:
    """Per-model field; `part` is one of n err tp tc cost priced dn ds, or `h<i>`."""
    return _model_fields(name)[part] if part in _PARTS else f"m:{name}|{part}"


_PARTS = ("n", "err", "tp", "tc", "cost", "priced", "dn", "ds")


@functools.lru_cache(maxsize=4096)
def _model_fields(name: str) -> dict[str, str]:
    # Built once per model: these names are formatted several times for every event.
    return {part: f"m:{name}|{part}" for part in _PARTS}


def _num(value: Any) -> int:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(float(value))


def merge(hashes: list[Mapping[Any, Any]]) -> dict[str, int]:
    """Sum the partitions' counter hashes (bytes or str keys); `since` takes the minimum."""
    out: dict[str, int] = {}
    for fields in hashes:
        for raw_key, raw_value in fields.items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            value = _num(raw_value)
            if key == SINCE:
                out[SINCE] = min(out.get(SINCE, value), value)
            else:
                out[key] = out.get(key, 0) + value
    return out


def _by_model(counters: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, int]] = {}
    for key, value in counters.items():
        if key.startswith("m:") and "|" in key:
            name, part = key[2:].rsplit("|", 1)
            raw.setdefault(name, {})[part] = value
    out: dict[str, dict[str, Any]] = {}
    for name, parts in sorted(raw.items()):
        buckets = {int(p[1:]): c for p, c in parts.items() if p.startswith("h") and p[1:].isdigit()}
        timed = parts.get("dn", 0)
        tokens = parts.get("tp", 0) + parts.get("tc", 0)
        priced = parts.get("priced", 0) > 0
        out[name] = {
            "count": parts.get("n", 0),
            "errors": parts.get("err", 0),
            "tokens_prompt": parts.get("tp", 0),
            "tokens_completion": parts.get("tc", 0),
            "cost_usd": round(parts.get("cost", 0) / NANOS, 9) if priced or not tokens else None,
            "avg_duration_ms": round(parts.get("ds", 0) / timed, 3) if timed else None,
            "p50_duration_ms": histogram.quantile(buckets, 0.50),
            "p95_duration_ms": histogram.quantile(buckets, 0.95),
            "p99_duration_ms": histogram.quantile(buckets, 0.99),
        }
    return out


def _prefixed(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in sorted(counters.items()) if k.startswith(prefix) and v}


def render(counters: Mapping[str, int], events_last_60s: int) -> dict[str, Any]:
    """The `/api/stats` body from merged counters and the events of the last 60 s."""
    by_status = _prefixed(counters, "st:")
    done = by_status.get("completed", 0) + by_status.get("failed", 0)
    prompt, completion = counters.get(TOKENS_PROMPT, 0), counters.get(TOKENS_COMPLETION, 0)
    since = counters.get(SINCE)
    return {
        "total": counters.get(TOTAL, 0),
        "by_event_type": _prefixed(counters, "et:"),
        "by_status": by_status,
        "by_source": _prefixed(counters, "src:"),
        "by_model": _by_model(counters),
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "cost_usd": round(counters.get(COST, 0) / NANOS, 9),
        "error_rate": round(by_status.get("failed", 0) / done, 6) if done else 0.0,
        "runs": {state: max(0, counters.get(runs(state), 0)) for state in RUN_STATES},
        "events_per_second": round(events_last_60s / 60.0, 3),
        "since": rfc3339(since / 1000) if since else None,
    }
