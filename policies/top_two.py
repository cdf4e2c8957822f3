"""Top-two Thompson sampling (Russo 2016): Thompson's leader, or with probability 1 − β its challenger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._statistics import ArmStatistics, FloatArray, IndexArray
from policies.posterior import PosteriorModel, sample_means

#: Posterior values drawn (draws × arms) for the P(best) estimate behind the challengers.
ESTIMATE_VALUES = 8_192
MIN_ESTIMATE_DRAWS = 128


@dataclass(frozen=True, slots=True)
class TopTwoThompson:
    """Keeps measuring the runner-up: built for identifying the best arm, not for minimum regret.

    Russo re-draws the posterior until another arm leads; the arm that then leads is j with
    probability P(j best) / (1 − P(l best)) for leader l. Both `choose` and `allocation`
    draw challengers from one table of those probabilities, estimated from one set of
    posterior draws, so the allocation is the probability of what `choose` does. Where a
    leader won every draw, its row falls back to which other arm leads once it is set aside.
    """

    beta: float = 0.5
    model: PosteriorModel = "beta"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")

    def challenger_table(self, stats: ArmStatistics, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """(P(best) estimate, shape (K,); challenger distribution per leader, shape (K, K), rows sum to 1)."""
        arms = stats.arms
        draws = sample_means(stats, self.model, rng, max(MIN_ESTIMATE_DRAWS, ESTIMATE_VALUES // arms))
        p_best = np.bincount(draws.argmax(axis=1), minlength=arms) / draws.shape[0]
        table = np.tile(p_best, (arms, 1))
        np.fill_diagonal(table, 0.0)
        for leader in np.flatnonzero(table.sum(axis=1) <= 0):
            masked = draws.copy()
            masked[:, leader] = -np.inf
            table[leader] = np.bincount(masked.argmax(axis=1), minlength=arms) / draws.shape[0]
        return p_best, table / table.sum(axis=1, keepdims=True)

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        # Leaders first, from the same draws plain Thompson sampling would make.
        leaders: IndexArray = sample_means(stats, self.model, rng, size).argmax(axis=1)
        if stats.arms == 1 or self.beta == 1.0:
            return leaders
        _, table = self.challenger_table(stats, rng)
        cumulative = np.cumsum(table, axis=1)[leaders]
        challengers = np.minimum((cumulative <= rng.random((size, 1))).sum(axis=1), stats.arms - 1)
        take_leader = rng.random(size) < self.beta
        return np.where(take_leader, leaders, challengers)

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        if stats.arms == 1:
            return np.ones(1)
        p_best, table = self.challenger_table(stats, rng)
        shares: FloatArray = self.beta * p_best + (1.0 - self.beta) * p_best @ table
        return shares
