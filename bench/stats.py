"""Pure arithmetic over measurements: percentiles, medians, ratios, verdicts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def latency_summary(values_ns: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/p999/max in milliseconds, and the sample count."""
    ordered = sorted(values_ns)
    if not ordered:
        return {"count": 0}
    ms = 1e6
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 50) / ms, 3),
        "p90_ms": round(percentile(ordered, 90) / ms, 3),
        "p99_ms": round(percentile(ordered, 99) / ms, 3),
        "p999_ms": round(percentile(ordered, 99.9) / ms, 3),
        "max_ms": round(ordered[-1] / ms, 3),
    }


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratio(value: float, reference: float) -> float | None:
    if reference <= 0:
        return None
    return round(value / reference, 3)


def at_least(value: float | None, bound: float) -> bool:
    return value is not None and value >= bound


def at_most(value: float | None, bound: float) -> bool:
    return value is not None and value <= bound


def verdict(checks: Iterable[bool]) -> str:
    """ "met" when every check holds, else "missed"."""
    return "met" if all(checks) else "missed"
