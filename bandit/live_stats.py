"""Stats as the stats endpoint, the dashboard and its event streams read them.

Computing an experiment's stats costs milliseconds (posterior integration), so a process
computes each experiment's at most once per `max_age_s`, however many dashboards watch it,
and always off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import anyio.to_thread
import msgspec
import numpy as np

from bandit.learning import policy_discount
from bandit.models import Experiment
from bandit.payloads import ExperimentStats
from bandit.stats import experiment_stats
from bandit.store import ExperimentStore
from proxy.health import ArmHealth

log = logging.getLogger("mab.live")


async def compute_stats(store: ExperimentStore, health: ArmHealth, experiment: Experiment) -> ExperimentStats:
    """The experiment's stats from its counters in Redis now (raises StoreUnavailable)."""
    name = experiment.name
    counters = await store.counters(name, [arm.name for arm in experiment.arms], policy_discount(experiment))
    latencies = await store.latency_histograms(name)
    # Posterior summaries cost milliseconds to hundreds of them at many arms: off the event loop,
    # so invokes keep flowing while someone watches the stats.
    return await anyio.to_thread.run_sync(
        experiment_stats,
        experiment,
        counters,
        latencies,
        lambda arm: health.state(arm.url),
        np.random.default_rng(),
    )


@dataclass(slots=True)
class _Cached:
    stats: ExperimentStats
    incarnation: str
    at: float


class LiveStats:
    """Per-process cache of recent stats, one computation per experiment at a time."""

    def __init__(self, store: ExperimentStore, health: ArmHealth, max_age_s: float) -> None:
        self.store = store
        self.health = health
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
                experiment = await self.store.get(name)
                stats = await compute_stats(self.store, self.health, experiment)
                cached = self._cached[name] = _Cached(stats, experiment.incarnation, time.monotonic())
        if len(self._cached) > 10_000:  # bound memory under a flood of names (deleted experiments)
            self._cached.clear()
            self._locks.clear()
        return cached.stats, cached.incarnation

    def forget(self, name: str) -> None:
        self._cached.pop(name, None)


class RegretEstimate(msgspec.Struct, kw_only=True):
    """What the traffic so far cost against always serving the current leader.

    `regret` is Σ decisions_i × (mean_leader − mean_i) over serving arms, in reward units,
    with today's estimated means; `lift` is how much higher the leader's mean is than the
    mean reward actually obtained, as a fraction of the latter (None when undefined).
    """

    leader: str | None
    regret: float
    lift: float | None


def regret_estimate(stats: ExperimentStats) -> RegretEstimate:
    serving = [arm for arm in stats.arms if not arm.shadow and arm.mean is not None]
    leader = next((arm for arm in serving if arm.name == stats.leader), None)
    if leader is None or leader.mean is None:
        return RegretEstimate(leader=None, regret=0.0, lift=None)
    regret = sum(arm.decisions * (leader.mean - arm.mean) for arm in serving if arm.mean is not None)
    rewards = sum(arm.rewards for arm in serving)
    obtained = sum(arm.reward_sum for arm in serving) / rewards if rewards else None
    lift = (leader.mean - obtained) / abs(obtained) if obtained else None
    return RegretEstimate(leader=leader.name, regret=float(regret), lift=lift)
