"""Sufficient statistics of the arms' rewards, the input of every policy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class ArmStatistics:
    """Per-arm observation counts and reward sums; every array has shape (K,).

    Rewards are expected on the policy's scale (in [0, 1] for bounded rewards):
    the service normalises them before a policy sees them.
    """

    pulls: FloatArray
    reward_sum: FloatArray
    reward_sq_sum: FloatArray
    # Learned action preferences of the gradient bandit; None for every other policy.
    preferences: FloatArray | None = None

    def __post_init__(self) -> None:
        shapes = {self.pulls.shape, self.reward_sum.shape, self.reward_sq_sum.shape}
        if self.preferences is not None:
            shapes.add(self.preferences.shape)
        if len(shapes) != 1 or self.pulls.ndim != 1:
            raise ValueError(f"statistics must be 1-d arrays of one shape, got {shapes}")
        if self.pulls.shape[0] == 0:
            raise ValueError("statistics need at least one arm")

    @classmethod
    def from_lists(
        cls,
        pulls: list[float] | FloatArray,
        reward_sum: list[float] | FloatArray,
        reward_sq_sum: list[float] | FloatArray | None = None,
    ) -> ArmStatistics:
        """Build statistics from plain sequences (squares default to the sums, as for 0/1 rewards)."""
        pulls_array = np.asarray(pulls, dtype=np.float64)
        sum_array = np.asarray(reward_sum, dtype=np.float64)
        sq_array = sum_array.copy() if reward_sq_sum is None else np.asarray(reward_sq_sum, dtype=np.float64)
        return cls(pulls_array, sum_array, sq_array)

    @classmethod
    def zeros(cls, arms: int) -> ArmStatistics:
        """Statistics of `arms` arms that have seen nothing yet."""
        return cls(np.zeros(arms), np.zeros(arms), np.zeros(arms))

    @property
    def arms(self) -> int:
        return int(self.pulls.shape[0])

    @property
    def means(self) -> FloatArray:
        """Mean reward per arm, 0 where an arm has no observation; shape (K,)."""
        return np.divide(self.reward_sum, self.pulls, out=np.zeros_like(self.reward_sum), where=self.pulls > 0)

    def subset(self, indices: IndexArray) -> ArmStatistics:
        """Statistics of the arms at `indices`, in that order."""
        preferences = None if self.preferences is None else self.preferences[indices]
        return ArmStatistics(self.pulls[indices], self.reward_sum[indices], self.reward_sq_sum[indices], preferences)

    @property
    def variances(self) -> FloatArray:
        """Sample variance of each arm's rewards (0 below two observations); shape (K,)."""
        pulls = self.pulls
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = (self.reward_sq_sum - pulls * self.means**2) / (pulls - 1.0)
        return np.where(pulls > 1.0, np.maximum(variance, 0.0), 0.0)
