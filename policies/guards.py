"""Policy wrappers that bound what any arm is played: burn-in, a traffic floor, reserved shares."""

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


@dataclass(frozen=True, slots=True)
class ReservedShares:
    """Fixed shares for some arms, `policy` over the others: an arm re-tried after a guardrail cap
    gets its small share whatever the policy thinks of it, and the rest learn as before.

    `reserved` holds (position, share) pairs; with every arm reserved, their shares are scaled to 1.
    """

    policy: Policy
    reserved: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        total = sum(share for _, share in self.reserved)
        if not all(share > 0 for _, share in self.reserved) or total > 1.0:
            raise ValueError(f"reserved shares must be positive and sum to at most 1, got {self.reserved}")

    def _rest(self, arms: int) -> IndexArray:
        taken = {position for position, _ in self.reserved}
        return np.asarray([i for i in range(arms) if i not in taken], dtype=np.intp)

    def _shares(self, rest: IndexArray) -> tuple[IndexArray, FloatArray]:
        positions = np.asarray([position for position, _ in self.reserved], dtype=np.intp)
        shares = np.asarray([share for _, share in self.reserved], dtype=np.float64)
        if rest.size == 0:
            shares = shares / shares.sum()
        return positions, shares

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        rest = self._rest(stats.arms)
        positions, shares = self._shares(rest)
        allocation = np.zeros(stats.arms)
        allocation[positions] = shares
        if rest.size:
            allocation[rest] = (1.0 - shares.sum()) * self.policy.allocation(stats.subset(rest), rng)
        return allocation

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        rest = self._rest(stats.arms)
        positions, shares = self._shares(rest)
        if rest.size:
            chosen: IndexArray = rest[self.policy.choose(stats.subset(rest), rng, size)]
        else:
            chosen = np.full(size, positions[0], dtype=np.intp)
        draw = rng.random(size)
        for position, low, high in zip(positions, np.cumsum(shares) - shares, np.cumsum(shares), strict=True):
            chosen[(draw >= low) & (draw < high)] = position
        return chosen
