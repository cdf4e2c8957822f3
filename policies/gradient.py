"""Gradient bandit: a softmax over action preferences learned by stochastic gradient ascent.

The preferences are state, not a summary of the rewards, so they are updated once per
observation (by :class:`policies.tracker.StatisticsTracker` in process, and by the same
arithmetic in the service's Lua feedback script) and read by the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from policies._base import choose_from_allocation
from policies._statistics import ArmStatistics, FloatArray, IndexArray


@dataclass(frozen=True, slots=True)
class GradientStep:
    """How one reward moves the preferences (Sutton & Barto, 2nd ed., §2.8).

    H ← H + step_size · v, with v ← momentum · v + (r − baseline) · (onehot(arm) − π),
    where π = softmax(H) and the baseline is the running mean reward (or 0 without one).
    """

    step_size: float = 0.1
    momentum: float = 0.0
    baseline: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.step_size <= 10.0:
            raise ValueError(f"step_size must be in (0, 10], got {self.step_size}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")

    def apply(
        self, preferences: FloatArray, velocity: FloatArray, baseline: float, arm: int, reward: float
    ) -> tuple[FloatArray, FloatArray]:
        """New (preferences, velocity) after `reward` from `arm`; `baseline` is the mean before it."""
        advantage = reward - (baseline if self.baseline else 0.0)
        gradient = -softmax(preferences) * advantage
        gradient[arm] += advantage
        velocity = self.momentum * velocity + gradient
        return preferences + self.step_size * velocity, velocity


@dataclass(frozen=True, slots=True)
class GradientBandit:
    """Plays each arm with probability softmax(preferences)."""

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        preferences = stats.preferences if stats.preferences is not None else np.zeros(stats.arms)
        shares: FloatArray = softmax(preferences)
        return shares

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        return choose_from_allocation(self.allocation(stats, rng), rng, size)
