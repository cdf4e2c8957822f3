"""Statistics updated one observation at a time: discounting, change detection, preferences.

This is the in-process reference of the service's Lua feedback script
(`bandit/store/lua/record_feedback.lua`), which applies the same arithmetic inside Redis;
`tests/store/test_lua_matches_tracker.py` holds the two to the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from policies._statistics import ArmStatistics, FloatArray
from policies.change_detection import PageHinkley, PageHinkleyState
from policies.gradient import GradientStep


@dataclass(frozen=True, slots=True)
class DetectedChange:
    step: int
    arm: int


@dataclass
class StatisticsTracker:
    """Per-arm discounted sufficient statistics plus the state some policies keep.

    With discount γ < 1 each observation makes every older one weigh γ× less
    (discounted Thompson sampling, Raj & Kalyani 2017): statistics follow an arm whose
    behaviour changes, with an effective memory of about 1/(1 − γ) observations.
    """

    arms: int
    discount: float = 1.0
    change_detection: PageHinkley | None = None
    gradient: GradientStep | None = None
    step: int = field(default=0, init=False)
    changes: list[DetectedChange] = field(default_factory=list, init=False)
    _pulls: FloatArray = field(init=False)
    _sums: FloatArray = field(init=False)
    _squares: FloatArray = field(init=False)
    _preferences: FloatArray = field(init=False)
    _velocity: FloatArray = field(init=False)
    _baseline: float = field(default=0.0, init=False)
    _baseline_count: int = field(default=0, init=False)
    _detectors: list[PageHinkleyState] = field(init=False)
    _cached: ArmStatistics | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.arms < 1:
            raise ValueError("a tracker needs at least one arm")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        self._pulls, self._sums, self._squares = np.zeros(self.arms), np.zeros(self.arms), np.zeros(self.arms)
        self._preferences, self._velocity = np.zeros(self.arms), np.zeros(self.arms)
        self._detectors = [PageHinkleyState() for _ in range(self.arms)]

    def observe(self, arm: int, reward: float) -> None:
        """Count one reward of `arm` (on the policy's scale)."""
        self.step += 1
        self._cached = None
        if self.discount < 1.0:
            for values in (self._pulls, self._sums, self._squares):
                values *= self.discount
        self._pulls[arm] += 1.0
        self._sums[arm] += reward
        self._squares[arm] += reward * reward
        if self.gradient is not None:
            self._preferences, self._velocity = self.gradient.apply(
                self._preferences, self._velocity, self._baseline, arm, reward
            )
            # The mean of the rewards the gradient has seen (not of the experiment's whole history).
            self._baseline_count += 1
            self._baseline += (reward - self._baseline) / self._baseline_count
        if self.change_detection is not None and self._detectors[arm].update(reward, self.change_detection):
            self.changes.append(DetectedChange(self.step, arm))
            self._forget(arm, self.change_detection)

    def _forget(self, arm: int, settings: PageHinkley) -> None:
        if settings.action == "flag":
            return
        forgotten = slice(None) if settings.action == "reset_all" else slice(arm, arm + 1)
        for values in (self._pulls, self._sums, self._squares):
            values[forgotten] = 0.0
        if settings.action == "reset_all":
            self._detectors = [PageHinkleyState() for _ in range(self.arms)]

    @property
    def statistics(self) -> ArmStatistics:
        """The statistics a policy reads now (cached until the next observation)."""
        if self._cached is None:
            preferences = self._preferences.copy() if self.gradient is not None else None
            self._cached = ArmStatistics(self._pulls.copy(), self._sums.copy(), self._squares.copy(), preferences)
        return self._cached
