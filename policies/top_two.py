"""Top-two Thompson sampling (Russo 2016): Thompson's leader, or with probability 1 − β its challenger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._statistics import ArmStatistics, FloatArray, IndexArray
from policies.posterior import PosteriorModel, sample_means

#: Extra posterior draws per decision while looking for a challenger that differs from the leader.
CHALLENGER_TRIES = 16
ALLOCATION_DRAWS = 4096


@dataclass(frozen=True, slots=True)
class TopTwoThompson:
    """Keeps measuring the runner-up: built for identifying the best arm, not for minimum regret."""

    beta: float = 0.5
    model: PosteriorModel = "beta"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        leaders = sample_means(stats, self.model, rng, size).argmax(axis=1)
        if stats.arms == 1:
            return leaders
        # Re-draw until another arm leads; vectorised as a fixed number of tries per decision.
        retries = sample_means(stats, self.model, rng, size * CHALLENGER_TRIES).reshape(size, CHALLENGER_TRIES, -1)
        retry_leaders = retries.argmax(axis=2)
        differs = retry_leaders != leaders[:, None]
        first = differs.argmax(axis=1)
        # Should no try differ (one arm dominates), the best of the rest in one draw stands in.
        masked = retries[:, 0, :].copy()
        masked[np.arange(size), leaders] = -np.inf
        challengers = np.where(differs.any(axis=1), retry_leaders[np.arange(size), first], masked.argmax(axis=1))
        take_leader = rng.random(size) < self.beta
        return np.where(take_leader, leaders, challengers)

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        return np.bincount(self.choose(stats, rng, ALLOCATION_DRAWS), minlength=stats.arms) / ALLOCATION_DRAWS
