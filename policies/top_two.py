"""Top-two Thompson sampling (Russo 2016): Thompson's leader, or with probability 1 − β its challenger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies._statistics import ArmStatistics, FloatArray, IndexArray
from policies.posterior import PosteriorModel, probability_best, sample_means

#: Posterior draws behind the P(best) estimate of `allocation`.
PROBABILITY_DRAWS = 2048
#: Posterior draws a challenger is looked for among, and how many of them each decision tries.
POOL_DRAWS = 256
CHALLENGER_TRIES = 32


@dataclass(frozen=True, slots=True)
class TopTwoThompson:
    """Keeps measuring the runner-up: built for identifying the best arm, not for minimum regret.

    Russo re-draws the posterior until another arm leads; the arm that then leads is j with
    probability P(j best) / (1 − P(leader best)). A bounded number of tries among a pool
    of draws stands in for the unbounded loop.
    """

    beta: float = 0.5
    model: PosteriorModel = "beta"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")

    def _p_best(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        return probability_best(sample_means(stats, self.model, rng, PROBABILITY_DRAWS))

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        # Leaders first, from the same draws plain Thompson sampling would make.
        draws = sample_means(stats, self.model, rng, size)
        leaders = draws.argmax(axis=1)
        if stats.arms == 1 or self.beta == 1.0:
            return leaders
        # Russo's re-draws, without new draws: the other posterior draws of the batch (topped up
        # to a pool of POOL_DRAWS) are independent samples, so the first of them, in random order,
        # whose leader differs is a challenger with exactly the re-draw distribution.
        pool = leaders
        if size < POOL_DRAWS:
            pool = np.concatenate([leaders, sample_means(stats, self.model, rng, POOL_DRAWS - size).argmax(axis=1)])
        candidates = pool[rng.integers(pool.shape[0], size=(size, CHALLENGER_TRIES))]
        differs = candidates != leaders[:, None]
        first = candidates[np.arange(size), differs.argmax(axis=1)]
        # Where no candidate differs (one arm dominates), the best of the others in this draw stands in.
        masked = draws.copy()
        masked[np.arange(size), leaders] = -np.inf
        challengers = np.where(differs.any(axis=1), first, masked.argmax(axis=1))
        take_leader = rng.random(size) < self.beta
        return np.where(take_leader, leaders, challengers)

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        p_best = self._p_best(stats, rng)
        if stats.arms == 1:
            return p_best
        # β · P(j best) + (1 − β) · Σ_l P(l best) · P(j best) / (1 − P(l best)), for j ≠ l.
        others = 1.0 - p_best
        safe = np.where(others > 0, others, 1.0)
        challenger = p_best * (
            np.sum(np.where(others > 0, p_best / safe, 0.0)) - np.where(others > 0, p_best / safe, 0.0)
        )
        # An arm holding all of P(best) has no challenger by this formula: its share goes uniformly.
        stranded = p_best[others <= 0].sum()
        challenger += stranded * (others > 0) / max((others > 0).sum(), 1)
        shares = self.beta * p_best + (1.0 - self.beta) * challenger
        return shares / shares.sum()
