"""The dashboard's view of recent stats, shared by its pages, its event streams and the sampler.

Stats are recomputed only when what they come from changed (:class:`bandit.api.stats.StatsMemo`,
which the stats endpoint shares). On top of that, a process asks Redis about an experiment at
most once per `max_age_s`, however many dashboards watch it.
"""

from __future__ import annotations

from collections.abc import Sequence

from bandit.api.stats import Computed, StatsMemo
from bandit.core.models import Experiment
from bandit.core.payloads import ExperimentStats
from bandit.dashboard.recent import RecentDecisions
from bandit.store.series import SeriesStore


class StatsCache:
    """Per-process stats no older than `max_age_s`, from the shared memo, and the overview's
    recent decisions (`recent`)."""

    def __init__(self, memo: StatsMemo, series: SeriesStore, max_age_s: float) -> None:
        self.memo = memo
        self.recent = RecentDecisions(series)
        self.max_age_s = max_age_s

    async def get(self, name: str, max_age_s: float | None = None) -> tuple[ExperimentStats, str]:
        """Stats no older than `max_age_s` (default: the cache's), and their incarnation."""
        computed = await self.memo.current(name, self.max_age_s if max_age_s is None else max_age_s)
        return computed.stats, computed.experiment.incarnation

    async def get_many(self, names: Sequence[str], max_age_s: float | None = None) -> dict[str, Computed]:
        """The stats of each experiment that still exists, the stale ones read in one round trip."""
        return await self.memo.current_many(names, self.max_age_s if max_age_s is None else max_age_s)

    async def get_routed(
        self, experiments: Sequence[Experiment], max_age_s: float | None = None
    ) -> dict[str, Computed]:
        """`get_many` for experiments as this process routes them: their settings are not read again."""
        return await self.memo.current_of(experiments, self.max_age_s if max_age_s is None else max_age_s)

    def forget(self, name: str) -> None:
        self.memo.forget(name)
