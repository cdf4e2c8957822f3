"""Posterior distributions of each arm's mean reward, for sampling and for people.

Two models cover the reward types the service accepts:
- ``beta``: rewards in [0, 1] (clicks, correct labels, normalised ratings), a
  Beta(prior + successes, prior + failures) posterior where a fractional reward
  counts as a fractional success;
- ``gaussian``: unbounded real rewards, a Normal posterior of the mean with the
  sample variance (a unit variance until an arm has two observations).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

from policies._statistics import ArmStatistics, FloatArray

PosteriorModel = Literal["beta", "gaussian"]

#: Beta(1, 1): a uniform prior on each arm's success rate.
BETA_PRIOR = 1.0
#: Smallest parameter handed to the Beta sampler, guarding against rounding below 0.
_MIN_SHAPE = 1e-9


def beta_parameters(stats: ArmStatistics) -> tuple[FloatArray, FloatArray]:
    """Posterior (alpha, beta) per arm for rewards in [0, 1]; shapes (K,), (K,)."""
    successes = np.clip(stats.reward_sum, 0.0, stats.pulls)
    alpha = BETA_PRIOR + successes
    beta = BETA_PRIOR + stats.pulls - successes
    return np.maximum(alpha, _MIN_SHAPE), np.maximum(beta, _MIN_SHAPE)


def gaussian_parameters(stats: ArmStatistics) -> tuple[FloatArray, FloatArray]:
    """Posterior (mean, standard error) of each arm's mean reward; shapes (K,), (K,)."""
    pulls = stats.pulls
    means = stats.means
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (stats.reward_sq_sum - pulls * means**2) / (pulls - 1.0)
    variance = np.where(pulls >= 2, np.maximum(variance, 1e-12), 1.0)
    standard_error = np.sqrt(variance / np.maximum(pulls, 1.0))
    # An arm with no data has no mean: a wide prior keeps it in play.
    standard_error = np.where(pulls > 0, standard_error, 1e3)
    return means, standard_error


def sample_means(stats: ArmStatistics, model: PosteriorModel, rng: np.random.Generator, draws: int) -> FloatArray:
    """Draw each arm's mean reward from its posterior; shape (draws, K)."""
    if model == "beta":
        alpha, beta = beta_parameters(stats)
        return rng.beta(alpha, beta, size=(draws, stats.arms))
    mean, standard_error = gaussian_parameters(stats)
    return rng.normal(mean, standard_error, size=(draws, stats.arms))


def probability_best(samples: FloatArray) -> FloatArray:
    """Share of posterior draws in which each arm has the highest mean; (draws, K) -> (K,)."""
    winners = samples.argmax(axis=1)
    return np.bincount(winners, minlength=samples.shape[1]) / samples.shape[0]


def expected_loss(samples: FloatArray) -> FloatArray:
    """Mean reward given up by choosing each arm instead of the best; (draws, K) -> (K,)."""
    return (samples.max(axis=1, keepdims=True) - samples).mean(axis=0)


def credible_interval(
    stats: ArmStatistics, model: PosteriorModel, level: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed credible interval of each arm's mean; shapes (K,), (K,)."""
    tail = (1.0 - level) / 2.0
    if model == "beta":
        alpha, beta = beta_parameters(stats)
        return scipy_stats.beta.ppf(tail, alpha, beta), scipy_stats.beta.ppf(1.0 - tail, alpha, beta)
    mean, standard_error = gaussian_parameters(stats)
    z = scipy_stats.norm.ppf(1.0 - tail)
    return mean - z * standard_error, mean + z * standard_error
