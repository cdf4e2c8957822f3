"""Policy wrappers that bound how little any arm is played: burn-in and a traffic floor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._base import Policy
from policies._statistics import ArmStatistics, FloatArray, IndexArray


@dataclass(frozen=True, slots=True)
class BurnIn:
    """Uniform over the arms short of `observations` until every arm has that many, then `policy`."""

    policy: Policy
    observations: int

    def __post_init__(self) -> None:
        if self.observations < 0:
            raise ValueError(f"burn_in must be >= 0, got {self.observations}")

    def _short(self, stats: ArmStatistics) -> np.ndarray:
        return stats.pulls < self.observations

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        short = self._short(stats)
        if short.any():
            shares: FloatArray = short / short.sum()
            return shares
        return self.policy.allocation(stats, rng)

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        short = np.flatnonzero(self._short(stats))
        if short.size:
            return rng.choice(short, size=size)
        return self.policy.choose(stats, rng, size)


@dataclass(frozen=True, slots=True)
class TrafficFloor:
    """Every arm keeps at least `share` of traffic, so a changed arm is still seen.

    A mixture: with probability K·share a uniform choice, otherwise the policy's.
    """

    policy: Policy
    share: float

    def __post_init__(self) -> None:
        if not self.share >= 0.0:
            raise ValueError(f"min_share must be >= 0, got {self.share}")

    def _uniform_weight(self, arms: int) -> float:
        if arms * self.share > 1.0:
            raise ValueError(f"min_share {self.share} × {arms} arms exceeds all traffic")
        return arms * self.share

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        uniform = self._uniform_weight(stats.arms)
        return uniform / stats.arms + (1.0 - uniform) * self.policy.allocation(stats, rng)

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        uniform = self._uniform_weight(stats.arms)
        chosen = self.policy.choose(stats, rng, size)
        explore = rng.random(size) < uniform
        chosen[explore] = rng.integers(stats.arms, size=int(explore.sum()))
        return chosen
