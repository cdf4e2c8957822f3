"""Softmax (Boltzmann) exploration: play arms in proportion to exp(mean / temperature)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from policies._base import argmax_ties_shared, choose_from_allocation
from policies._statistics import ArmStatistics, FloatArray, IndexArray


@dataclass(frozen=True, slots=True)
class Softmax:
    """Boltzmann exploration with an optional 1/(1 + decay·t) cooling schedule over t pulls."""

    temperature: float = 0.1
    decay: float = 0.0

    def __post_init__(self) -> None:
        if not self.temperature > 0.0 or not np.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if not self.decay >= 0.0:
            raise ValueError(f"decay must be >= 0, got {self.decay}")

    def current_temperature(self, stats: ArmStatistics) -> float:
        return self.temperature / (1.0 + self.decay * float(stats.pulls.sum()))

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        untried = stats.pulls == 0
        if untried.any():
            # Means of untried arms are unknown, not 0: give each a first look before weighing.
            return argmax_ties_shared(untried.astype(np.float64))
        # Shift by the best mean before dividing: mean/τ alone overflows to inf for a tiny τ.
        # Worse arms may still reach -inf, which is exactly their weight of 0.
        with np.errstate(over="ignore"):
            shares: FloatArray = softmax((stats.means - stats.means.max()) / self.current_temperature(stats))
        return shares

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        return choose_from_allocation(self.allocation(stats, rng), rng, size)
