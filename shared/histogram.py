"""Fixed log-spaced duration buckets: mergeable across partitions by adding counts, and enough
for avg/p50/p95/p99 without keeping every duration.

Bucket i holds durations in (BOUNDS[i-1], BOUNDS[i]] milliseconds; bounds grow by 10 % from
1 ms, so a percentile read back is within about 5 % of the true value. The last bucket is open.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

GROWTH = 1.1
BOUNDS: tuple[float, ...] = tuple(GROWTH**i for i in range(200))  # 1 ms .. ~1.9e8 ms (~2 days)


def bucket(duration_ms: float) -> int:
    """Index of the bucket a duration falls in (negative durations count as 0)."""
    return bisect.bisect_left(BOUNDS, max(0.0, duration_ms))


def _range(index: int) -> tuple[float, float]:
    low = 0.0 if index == 0 else BOUNDS[index - 1]
    high = BOUNDS[index] if index < len(BOUNDS) else BOUNDS[-1] * GROWTH
    return low, high


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a bucket histogram, interpolated inside its bucket."""
    total = sum(c for c in counts.values() if c > 0)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(counts):
        count = counts[index]
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = _range(index)
            fraction = (rank - seen) / count
            return round(low + (high - low) * fraction, 3)
        seen += count
    return round(_range(max(counts))[1], 3)


def is_finite_duration(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
