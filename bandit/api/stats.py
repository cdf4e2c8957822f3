"""An experiment's stats computed from its counters in Redis now, for the stats endpoint and the dashboard."""

from __future__ import annotations

import anyio.to_thread
import numpy as np

from bandit.core.models import Experiment
from bandit.core.payloads import ExperimentStats
from bandit.core.policy_adapter import experiment_stats, policy_discount
from bandit.core.ports import HealthView
from bandit.store.counters import CounterStore


async def compute_stats(counters: CounterStore, health: HealthView, experiment: Experiment) -> ExperimentStats:
    """The experiment's stats from its counters in Redis now (raises StoreUnavailable)."""
    name = experiment.name
    arm_counters = await counters.read(name, [arm.name for arm in experiment.arms], policy_discount(experiment))
    latencies = await counters.latency_histograms(name)
    # Posterior summaries cost milliseconds to hundreds of them at many arms: off the event loop,
    # so invokes keep flowing while someone watches the stats.
    return await anyio.to_thread.run_sync(
        experiment_stats,
        experiment,
        arm_counters,
        latencies,
        lambda arm: health.state(arm.url),
        np.random.default_rng(),
    )
