"""Fixed latency buckets shared by every replica, so histograms add up in Redis."""

from __future__ import annotations

import bisect
import math

# Upper bounds in milliseconds: 0.1 ms to ~80 s, each 25 % above the last (±12 % error).
BUCKET_UPPER_MS: tuple[float, ...] = tuple(0.1 * 1.25**i for i in range(62))


def bucket_of(latency_ms: float) -> int:
    """Index of the bucket a latency falls in; the last bucket also takes anything longer."""
    return min(bisect.bisect_left(BUCKET_UPPER_MS, latency_ms), len(BUCKET_UPPER_MS) - 1)


def quantile(counts: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram {bucket: count} in ms, or None when empty.

    Reports the geometric middle of the bucket holding the quantile.
    """
    total = sum(counts.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            upper = BUCKET_UPPER_MS[bucket]
            lower = BUCKET_UPPER_MS[bucket - 1] if bucket > 0 else 0.0
            return math.sqrt(lower * upper) if lower > 0 else upper / 2
    return BUCKET_UPPER_MS[-1]
