"""Once per series bucket, one replica writes each experiment's P(best) and means into it."""

from __future__ import annotations

import asyncio
import logging
import time

from bandit.core.errors import MabError
from bandit.core.ports import Routing
from bandit.dashboard.live import StatsCache
from bandit.store.series import SeriesStore

log = logging.getLogger("mab.series")
#: How often each replica offers to sample the current bucket of every experiment.
SAMPLE_INTERVAL_S = 1.0


class SeriesSampler:
    """Samples the posterior of every experiment this process knows into the current bucket.

    Each replica asks every `interval_s`; Redis gives each bucket to the first one (HSETNX),
    so the posterior is computed once per bucket across replicas, and a new experiment gets
    its first point within `interval_s`.
    """

    def __init__(self, series: SeriesStore, stats_cache: StatsCache, routing: Routing, interval_s: float) -> None:
        self.series = series
        self.stats_cache = stats_cache
        self.routing = routing
        self.interval_s = interval_s

    async def sample_once(self, now: float | None = None) -> int:
        """Sample the experiments whose current bucket this replica claims; returns how many."""
        now = time.time() if now is None else now
        targets = [(experiment.name, experiment.incarnation) for experiment in self.routing.experiments()]
        if not targets:
            return 0
        claimed = await self.series.claim_samples(targets, now)
        sampled = 0
        for (name, incarnation), mine in zip(targets, claimed, strict=True):
            if not mine:
                continue
            try:
                stats, current = await self.stats_cache.get(name)
            except MabError:  # deleted meanwhile, or Redis went away: nothing to sample
                continue
            if current != incarnation:
                continue  # reset meanwhile: its new history starts with the next bucket
            p_best = {arm.name: arm.p_best for arm in stats.arms if not arm.shadow}
            means = {arm.name: arm.mean for arm in stats.arms}
            await self.series.write_samples(name, incarnation, now, p_best, means)
            sampled += 1
        return sampled

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sample_once()
            except MabError as error:
                log.warning("series sampling skipped: %s", error.detail)
            except Exception:
                log.exception("series sampling failed")
