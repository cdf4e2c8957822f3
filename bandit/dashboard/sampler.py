"""Once per series bucket, one replica writes the P(best) and means of experiments that changed into it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

from bandit.core.errors import MabError
from bandit.core.models import Experiment
from bandit.core.ports import Routing
from bandit.dashboard.live import StatsCache
from bandit.store import keys
from bandit.store.series import Sample, SeriesStore

log = logging.getLogger("mab.series")
#: How often each replica looks for experiments whose current bucket it has not looked at yet.
SAMPLE_INTERVAL_S = 1.0
#: An unchanged posterior is written again after this long, so an idle experiment's chart keeps
#: a point at least this often (the page joins the points across the buckets in between).
UNCHANGED_POINT_EVERY_S = 60.0

_INCARNATION = keys.INCARNATION_FIELD.encode()


@dataclass(frozen=True, slots=True)
class _Written:
    """A point this replica wrote: its values, when, and the counters and settings version behind it."""

    sample: Sample
    at: float
    counters: dict[bytes, bytes]
    version: int


class SeriesSampler:
    """Writes the posterior of the experiments this process routes into their current bucket.

    Once per experiment and bucket, each replica reads the experiment's counters (one command)
    and compares them with those behind the last point it wrote. Only when they or the settings
    moved, or that point is UNCHANGED_POINT_EVERY_S old, does it offer to sample the bucket:
    Redis gives each bucket to the first replica that asks (HSETNX), which recomputes the stats
    if their inputs changed (the shared memo) and writes P(best) and means. So an idle
    experiment costs one read per bucket, not a claim, a read, a computation and a write; a new
    one gets its first point within `interval_s`; every step is one pipelined round trip.
    """

    def __init__(self, series: SeriesStore, stats_cache: StatsCache, routing: Routing, interval_s: float) -> None:
        self.series = series
        self.stats_cache = stats_cache
        self.routing = routing
        self.interval_s = interval_s
        # (experiment, incarnation) -> the last bucket this replica looked at.
        self._seen: dict[tuple[str, str], int] = {}
        # (experiment, incarnation) -> the last point this replica wrote, when, and what from.
        self._written: dict[tuple[str, str], _Written] = {}

    async def sample_once(self, now: float | None = None) -> int:
        """Sample the experiments that changed and whose current bucket this replica claims;
        returns how many points it wrote."""
        now = time.time() if now is None else now
        bucket = self.series.layout.bucket_of(now)
        routed = {(experiment.name, experiment.incarnation): experiment for experiment in self.routing.experiments()}
        # Forget deleted and reset experiments, so what is kept stays as large as the routing table.
        self._seen = {target: self._seen[target] for target in routed if target in self._seen}
        self._written = {target: self._written[target] for target in routed if target in self._written}
        self.stats_cache.memo.keep_only([name for name, _ in routed])
        due = [experiment for target, experiment in routed.items() if self._seen.get(target) != bucket]
        if not due:
            return 0
        counters = await self.series.read_counters([experiment.name for experiment in due])
        for experiment in due:  # only once Redis answered: after an outage, look again
            self._seen[experiment.name, experiment.incarnation] = bucket
        wanted = [
            experiment
            for experiment, raw in zip(due, counters, strict=True)
            # Other counters: reset or deleted meanwhile, its new history starts with the next bucket.
            if raw.get(_INCARNATION, b"").decode() == experiment.incarnation and self._wants_point(experiment, raw, now)
        ]
        if not wanted:
            return 0
        claimed = await self.series.claim_samples([(e.name, e.incarnation) for e in wanted], now)
        mine = [experiment for experiment, won in zip(wanted, claimed, strict=True) if won]
        if not mine:
            return 0
        # Read again now (not within the cache's max age): these are the ones that just moved.
        computed = await self.stats_cache.get_routed(mine, max_age_s=0.0)
        samples = []
        for experiment in mine:
            current = computed.get(experiment.name)
            if current is None:
                continue  # reset or deleted between the reads
            stats = current.stats
            p_best = {arm.name: arm.p_best for arm in stats.arms if not arm.shadow}
            means = {arm.name: arm.mean for arm in stats.arms}
            sample = Sample(experiment.name, experiment.incarnation, p_best, means)
            target = (experiment.name, experiment.incarnation)
            last = self._written.get(target)
            written = _Written(sample, now, current.inputs.counters, experiment.version)
            if last is not None and last.sample == sample and now - last.at < UNCHANGED_POINT_EVERY_S:
                self._written[target] = dataclasses.replace(written, at=last.at)
                continue  # the same point as this replica's last one (only health or latency moved)
            samples.append(written)
        await self.series.write_many_samples([written.sample for written in samples], now)
        for written in samples:
            self._written[written.sample.name, written.sample.incarnation] = written
        return len(samples)

    def _wants_point(self, experiment: Experiment, counters: dict[bytes, bytes], now: float) -> bool:
        """A point is due when the counters or settings moved since this replica's last point
        (whoever computed the stats since), or that point is old."""
        last = self._written.get((experiment.name, experiment.incarnation))
        return (
            last is None
            or now - last.at >= UNCHANGED_POINT_EVERY_S
            or last.version != experiment.version
            or last.counters != counters
        )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sample_once()
            except MabError as error:
                log.warning("series sampling skipped: %s", error.detail)
            except Exception:
                log.exception("series sampling failed")
