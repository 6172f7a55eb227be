"""Stats counters -> /api/stats (shared/stats.py) and duration buckets (shared/histogram.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import histogram, stats

pytestmark = pytest.mark.unit


def test_bucket_bounds() -> None:
    assert histogram.bucket(0) == 0 and histogram.bucket(1) == 0 and histogram.bucket(1.05) == 1
    assert histogram.bucket(-5) == 0


@given(st.lists(st.floats(1, 1e7), min_size=1, max_size=300), st.sampled_from([0.5, 0.95, 0.99]))
def test_quantile_within_a_bucket_of_the_truth(values: list[float], q: float) -> None:
    counts: dict[int, int] = {}
    for v in values:
        counts[histogram.bucket(v)] = counts.get(histogram.bucket(v), 0) + 1
    estimate = histogram.quantile(counts, q)
    ordered = sorted(values)
    low = ordered[max(0, int(q * len(values)) - 1)]
    high = ordered[min(len(values) - 1, int(q * len(values)))]
    assert estimate is not None
    # within one bucket (10 %) of the true order statistics; bucket 0 is [0, 1 ms]
    assert low / histogram.GROWTH - 1 <= estimate <= high * histogram.GROWTH + 1e-6


def test_quantile_of_nothing() -> None:
    assert histogram.quantile({}, 0.5) is None


def test_merge_sums_partitions_and_keeps_earliest_since() -> None:
    merged = stats.merge(
        [{b"total": b"3", b"since": b"2000"}, {"total": "4", "since": "1000", "st:failed": "1"}]
    )
    assert merged == {"total": 7, "since": 1000, "st:failed": 1}


def test_render_shape() -> None:
    rng = random.Random(1)
    counters = {
        "total": 10,
        "et:completion": 6,
        "et:error": 4,
        "st:completed": 6,
        "st:failed": 4,
        "src:webhook": 10,
        "tok:p": 5,
        "tok:c": 7,
        "cost": 1_500_000_000,
        "runs:running": 2,
        "runs:completed": 1,
        "runs:failed": -0,
        stats.model("gpt-4o", "n"): 10,
        stats.model("gpt-4o", "err"): 4,
        stats.model("gpt-4o", "tp"): 5,
        stats.model("gpt-4o", "tc"): 7,
        stats.model("gpt-4o", "cost"): 1_500_000_000,
        stats.model("gpt-4o", "priced"): 2,
        stats.model("qwen:latest", "n"): 1,
        stats.model("qwen:latest", "tc"): 9,
        "since": 1_767_225_600_000,
    }
    durations = [rng.uniform(100, 200) for _ in range(100)]
    for d in durations:
        key = stats.model("gpt-4o", f"h{histogram.bucket(d)}")
        counters[key] = counters.get(key, 0) + 1
    counters[stats.model("gpt-4o", "dn")] = 100
    counters[stats.model("gpt-4o", "ds")] = round(sum(durations))
    body = stats.render(counters, events_last_60s=120)
    assert body["total"] == 10 and body["by_status"] == {"completed": 6, "failed": 4}
    assert body["error_rate"] == 0.4 and body["events_per_second"] == 2.0
    assert body["tokens"] == {"prompt": 5, "completion": 7, "total": 12}
    assert body["cost_usd"] == 1.5
    assert body["runs"] == {"running": 2, "completed": 1, "failed": 0}
    gpt = body["by_model"]["gpt-4o"]
    assert gpt["count"] == 10 and gpt["errors"] == 4 and gpt["cost_usd"] == 1.5
    assert 100 <= gpt["p50_duration_ms"] <= 220 and gpt["p50_duration_ms"] <= gpt["p99_duration_ms"]
    assert gpt["avg_duration_ms"] == pytest.approx(sum(durations) / 100, abs=1)
    qwen = body["by_model"]["qwen:latest"]  # a model name with ':' and no price
    assert (
        qwen["cost_usd"] is None
        and qwen["avg_duration_ms"] is None
        and qwen["tokens_completion"] == 9
    )
    assert body["since"] == "2026-01-01T00:00:00.000Z"


def test_render_empty() -> None:
    body = stats.render({}, 0)
    assert body["total"] == 0 and body["error_rate"] == 0.0 and body["since"] is None
    assert body["by_model"] == {} and body["runs"] == {"running": 0, "completed": 0, "failed": 0}


# Events as (field, amount) increments; each lands in one of up to 8 partitions' hashes.
_increments = st.lists(
    st.tuples(
        st.sampled_from(
            ["total", "st:failed", "st:completed", "tok:p", "runs:running", "m:gpt-4o|h12"]
        ),
        st.integers(-3, 50),
        st.integers(0, 7),
    ),
    max_size=60,
)


@given(_increments, st.lists(st.integers(1, 2_000_000_000_000), min_size=1, max_size=8))
def test_partials_merge_to_what_one_hash_would_hold(
    increments: list[tuple[str, int, int]], sinces: list[int]
) -> None:
    # The read side adds per-partition partial aggregates (one hash per shard's partition):
    # however the same increments are spread over partitions, /api/stats is the same.
    whole: dict[str, int] = {"since": min(sinces)}
    parts: list[dict[bytes, bytes]] = [{b"since": str(s).encode()} for s in sinces]
    for field, amount, partition in increments:
        whole[field] = whole.get(field, 0) + amount
        part = parts[partition % len(parts)]
        part[field.encode()] = str(int(part.get(field.encode(), b"0")) + amount).encode()
    merged = stats.merge(parts)
    assert {k: v for k, v in merged.items() if v} == {k: v for k, v in whole.items() if v}
    assert stats.render(merged, 0) == stats.render(whole, 0)
