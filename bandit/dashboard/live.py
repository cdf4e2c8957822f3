"""The dashboard's cache of recent stats, shared by its pages, its event streams and the sampler.

Computing an experiment's stats costs milliseconds (posterior integration), so a process
computes each experiment's at most once per `max_age_s`, however many dashboards watch it,
and always off the event loop (:func:`bandit.api.stats.compute_stats`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bandit.api.stats import compute_stats
from bandit.core.payloads import ExperimentStats
from bandit.core.ports import HealthView
from bandit.store.counters import CounterStore
from bandit.store.experiments import ExperimentStore


@dataclass(slots=True)
class _Cached:
    stats: ExperimentStats
    incarnation: str
    at: float


class StatsCache:
    """Per-process cache of recent stats, one computation per experiment at a time."""

    def __init__(
        self, experiments: ExperimentStore, counters: CounterStore, health: HealthView, max_age_s: float
    ) -> None:
        self._experiments = experiments
        self._counters = counters
        self._health = health
        self.max_age_s = max_age_s
        self._cached: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str, max_age_s: float | None = None) -> tuple[ExperimentStats, str]:
        """Stats no older than `max_age_s` (default: the cache's), and their incarnation."""
        max_age_s = self.max_age_s if max_age_s is None else max_age_s
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            cached = self._cached.get(name)
            if cached is None or time.monotonic() - cached.at >= max_age_s:
                experiment = await self._experiments.get(name)
                stats = await compute_stats(self._counters, self._health, experiment)
                cached = self._cached[name] = _Cached(stats, experiment.incarnation, time.monotonic())
        if len(self._cached) > 10_000:  # bound memory under a flood of names (deleted experiments)
            self._cached.clear()
            self._locks.clear()
        return cached.stats, cached.incarnation

    def forget(self, name: str) -> None:
        self._cached.pop(name, None)
