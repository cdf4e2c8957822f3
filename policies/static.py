"""Static weights: A/B/n splits, canaries, and blue/green (100/0)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._base import choose_from_allocation
from policies._statistics import ArmStatistics, FloatArray, IndexArray


@dataclass(frozen=True, slots=True)
class StaticWeights:
    """Route by fixed relative weights, whatever the rewards say."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("weights must name at least one arm")
        if any(w < 0 or not np.isfinite(w) for w in self.weights):
            raise ValueError(f"weights must be finite and >= 0, got {list(self.weights)}")
        if sum(self.weights) <= 0:
            raise ValueError("weights must not all be 0")

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        if stats.arms != len(self.weights):
            raise ValueError(f"{len(self.weights)} weights for {stats.arms} arms")
        weights = np.asarray(self.weights, dtype=np.float64)
        shares: FloatArray = weights / weights.sum()
        return shares

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        return choose_from_allocation(self.allocation(stats, rng), rng, size)
