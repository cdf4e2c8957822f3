"""Epsilon-greedy: exploit the best mean, explore uniformly with probability epsilon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._base import argmax_ties_shared, choose_from_allocation
from policies._statistics import ArmStatistics, FloatArray, IndexArray


@dataclass(frozen=True, slots=True)
class EpsilonGreedy:
    """Epsilon-greedy with an optional 1/(1 + decay·t) schedule over t total pulls."""

    epsilon: float = 0.1
    decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.decay < 0.0:
            raise ValueError(f"decay must be >= 0, got {self.decay}")

    def current_epsilon(self, stats: ArmStatistics) -> float:
        """Exploration rate after the pulls seen so far."""
        return self.epsilon / (1.0 + self.decay * float(stats.pulls.sum()))

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        epsilon = self.current_epsilon(stats)
        untried = stats.pulls == 0
        # An arm nobody has tried yet outranks every tried one, so each arm gets a first look.
        greedy = argmax_ties_shared(untried.astype(np.float64)) if untried.any() else argmax_ties_shared(stats.means)
        return epsilon / stats.arms + (1.0 - epsilon) * greedy

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        return choose_from_allocation(self.allocation(stats, rng), rng, size)
