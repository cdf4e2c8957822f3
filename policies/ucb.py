"""Upper confidence bound: play the arm whose optimistic estimate is highest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._base import argmax_ties_shared, choose_from_allocation
from policies._statistics import ArmStatistics, FloatArray, IndexArray


@dataclass(frozen=True, slots=True)
class UCB1:
    """UCB1 (Auer et al. 2002), or with `variance_aware` its UCB1-Tuned variant.

    Classic index: mean + sqrt(c · ln t / n), for rewards in [0, 1] (c = 2 is the
    textbook bound). The tuned index replaces the range by each arm's variance
    estimate, capped at 1/4 (the largest variance in [0, 1]) when `bounded`; for
    unbounded rewards the cap is dropped and the sample variance alone sets the width.
    """

    c: float = 2.0
    variance_aware: bool = False
    bounded: bool = True

    def __post_init__(self) -> None:
        if not self.c >= 0.0 or not np.isfinite(self.c):
            raise ValueError(f"c must be a finite number >= 0, got {self.c}")
        if not self.bounded and not self.variance_aware:
            raise ValueError("UCB1 needs rewards in a known range; use variance_aware for unbounded rewards")

    def indices(self, stats: ArmStatistics) -> FloatArray:
        """The optimistic estimate of each arm; +inf for an arm never tried; shape (K,)."""
        pulls = stats.pulls
        log_t = np.log(max(float(pulls.sum()), 1.0))
        tried = np.maximum(pulls, 1e-12)
        if self.variance_aware:
            variance = stats.variances
            if self.bounded:
                variance = np.minimum(0.25, variance + np.sqrt(2.0 * log_t / tried))
            else:
                # An arm's own variance can be 0 by chance (or by a constant reward stream), which
                # would stop exploring it for good: never assume less spread than all arms show.
                variance = np.maximum(variance, _pooled_variance(stats))
            width = np.sqrt(self.c / 2.0 * log_t / tried * variance)
        else:
            width = np.sqrt(self.c * log_t / tried)
        # Unbounded rewards have no variance estimate below two observations: such arms come first.
        needed = 1 if self.bounded or not self.variance_aware else 2
        return np.where(pulls >= needed, stats.means + width, np.inf)

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        indices = self.indices(stats)
        if np.isinf(indices).any():
            return argmax_ties_shared(np.isinf(indices).astype(np.float64))
        return argmax_ties_shared(indices)

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        return choose_from_allocation(self.allocation(stats, rng), rng, size)


def _pooled_variance(stats: ArmStatistics) -> float:
    """Variance of all arms' rewards taken together (1 until there are two observations)."""
    total = float(stats.pulls.sum())
    if total < 2:
        return 1.0
    mean = float(stats.reward_sum.sum()) / total
    return max((float(stats.reward_sq_sum.sum()) - total * mean**2) / (total - 1.0), 1e-12)
