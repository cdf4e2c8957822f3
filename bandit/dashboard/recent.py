"""Decisions in the last minute per arm, for the overview, without reading idle experiments' buckets.

Decisions reach a history bucket in the same script call that adds them to the counters
(record_decisions.lua), so an experiment whose counters have not moved since time t has no
decisions in the buckets after t's. Once that is over a minute ago, its last minute is all
zeros and nothing needs reading. A closed bucket no longer changes either: each is read once.
"""

from __future__ import annotations

from collections.abc import Sequence

from bandit.api.stats import Computed
from bandit.store.series import SeriesStore

#: The overview's window.
RECENT_S = 60.0
#: How far apart the clocks of replicas may be: each writes into the bucket of its own time.
CLOCK_SKEW_S = 5.0


class RecentDecisions:
    """Per-process memory of closed buckets' decision counts, per experiment and incarnation."""

    def __init__(self, series: SeriesStore) -> None:
        self._series = series
        # (experiment, incarnation, arms) -> {bucket: decisions per arm}, closed buckets only.
        self._closed: dict[tuple[str, str, tuple[str, ...]], dict[int, dict[str, int]]] = {}

    async def of(self, computed: Sequence[Computed], now: float) -> list[dict[str, int]]:
        """Decisions per arm in the buckets from `now - RECENT_S` on, for each experiment; one round trip."""
        layout = self._series.layout
        first, current = layout.bucket_of(now - RECENT_S), layout.bucket_of(now)
        wanted: list[tuple[tuple[str, str, tuple[str, ...]], list[int]]] = []
        for entry in computed:
            experiment = entry.experiment
            key = (experiment.name, experiment.incarnation, tuple(arm.name for arm in experiment.arms))
            # No decision landed after the bucket of `counters_since` (give or take the clocks).
            last = min(current, layout.bucket_of(entry.counters_since + CLOCK_SKEW_S))
            closed = self._closed.setdefault(key, {})
            for old in [bucket for bucket in closed if bucket < first]:
                del closed[old]
            wanted.append((key, [bucket for bucket in range(first, last + 1) if bucket not in closed]))
        reads = [(name, incarnation, arms, buckets) for (name, incarnation, arms), buckets in wanted if buckets]
        replies = iter(await self._series.decisions_in(reads))
        totals = []
        for key, buckets in wanted:
            closed = self._closed[key]
            counts = dict.fromkeys(key[2], 0)
            for cached in closed.values():  # every one within the window: older ones were dropped above
                for arm, count in cached.items():
                    counts[arm] += count
            for bucket, read in zip(buckets, next(replies) if buckets else [], strict=True):
                for arm, count in read.items():
                    counts[arm] += count
                # Closed for every replica's clock: nothing will be added to it any more.
                if (bucket + 1) * layout.bucket_s + CLOCK_SKEW_S < now:
                    closed[bucket] = read
            totals.append(counts)
        # Only the experiments listed now are kept (deleted or reset ones are dropped).
        listed = {key for key, _ in wanted}
        self._closed = {key: value for key, value in self._closed.items() if key in listed}
        return totals
