"""The regret benchmark's scenarios: hidden reward rates, the shared reward draws, and pseudo-regret.

Every contender of one (scenario, seed) sees the same pre-drawn reward table, so
differences in regret come from the policies, not from luck in the rewards.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from policies import PosteriorModel

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]

DEFAULT_HORIZON = 20_000


@dataclass(frozen=True, slots=True)
class Phase:
    """Success rates in force from `start` (a fraction of the horizon) until the next phase."""

    start: float
    rates: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """Bernoulli arms (optionally minus a fixed latency cost), possibly changing, possibly with batched feedback."""

    name: str
    description: str
    phases: tuple[Phase, ...]
    # Reward = 1{success} - latency_penalty · latency_s[k]; all zero for plain Bernoulli arms.
    latency_s: tuple[float, ...] | None = None
    latency_penalty: float = 0.0
    # The policy sees no new reward until each block of `batch` decisions is complete.
    batch: int = 1

    @property
    def arms(self) -> int:
        return len(self.phases[0].rates)

    @property
    def binary(self) -> bool:
        """True when rewards are exactly 0 or 1 (no latency cost)."""
        return self.latency_s is None

    @property
    def posterior_model(self) -> PosteriorModel:
        """The Thompson model the service would pick: Gaussian once a latency penalty makes rewards real-valued."""
        return "beta" if self.binary else "gaussian"

    def latency_cost(self) -> FloatArray:
        """What each arm's latency subtracts from its reward; shape (K,)."""
        if self.latency_s is None:
            return np.zeros(self.arms)
        return self.latency_penalty * np.asarray(self.latency_s)

    def success_rates(self, horizon: int) -> FloatArray:
        """Success probability of each arm at each step; shape (T, K)."""
        rates = np.empty((horizon, self.arms))
        for phase in self.phases:
            rates[round(phase.start * horizon) :] = phase.rates
        return rates

    def expected_rewards(self, horizon: int) -> FloatArray:
        """Expected reward μ[t, k] of each arm at each step; shape (T, K)."""
        return self.success_rates(horizon) - self.latency_cost()

    def success_table(self, seed: int, horizon: int) -> FloatArray:
        """1 where arm k would succeed if chosen at step t, else 0, drawn from default_rng(seed); shape (T, K)."""
        uniforms = np.random.default_rng(seed).random((horizon, self.arms))
        return (uniforms < self.success_rates(horizon)).astype(np.float64)

    def reward_table(self, seed: int, horizon: int) -> FloatArray:
        """The reward R[t, k] arm k would earn if chosen at step t, drawn once per seed; shape (T, K)."""
        return self.success_table(seed, horizon) - self.latency_cost()

    def pseudo_regret(self, chosen: IndexArray) -> float:
        """Σ_t (μ*_t - μ[t, chosen_t]) over the steps in `chosen`, shape (T,)."""
        means = self.expected_rewards(chosen.shape[0])
        picked = means[np.arange(chosen.shape[0]), chosen]
        return float((means.max(axis=1) - picked).sum())


def _stationary(*rates: float) -> tuple[Phase, ...]:
    return (Phase(0.0, rates),)


S1 = Scenario("S1", "p = [0.04, 0.05, 0.07]", _stationary(0.04, 0.05, 0.07))

SCENARIOS: dict[str, Scenario] = {
    "S1": S1,
    "S2": Scenario("S2", "p = [0.50, 0.52]", _stationary(0.50, 0.52)),
    "S3": Scenario("S3", "ten arms p = 0.10 … 0.19", _stationary(*(round(0.10 + 0.01 * k, 2) for k in range(10)))),
    # The switch sits at a quarter of the horizon: t = 5,000 at the default 20,000 steps.
    "S4": Scenario(
        "S4",
        "p = [0.30, 0.20], swapped at T/4 (t = 5,000 of 20,000)",
        (Phase(0.0, (0.30, 0.20)), Phase(0.25, (0.20, 0.30))),
    ),
    # Pruned LeNet-5 versions: the most accurate is the slowest, and the fastest earns the most.
    "S5": Scenario(
        "S5",
        "LeNet-5 accuracy 0.9894/0.9896/0.9902, latency 1.1/1.3/1.5 s, reward 1{correct} - 0.01·latency",
        _stationary(0.9894, 0.9896, 0.9902),
        latency_s=(1.1, 1.3, 1.5),
        latency_penalty=0.01,
    ),
    "S6": Scenario("S6", "S1 with feedback in batches of 500 decisions", S1.phases, batch=500),
}


def feedback_rounds(horizon: int, batch: int, start: int = 0) -> list[tuple[int, int]]:
    """Steps [lo, hi) decided on one snapshot of the statistics: blocks ending at multiples of `batch`."""
    edges = [start, *range((start // batch + 1) * batch, horizon, batch), horizon]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]
