"""Posterior distributions of each arm's mean reward, for sampling and for people.

Two models cover the reward types the service accepts:
- ``beta``: rewards in [0, 1] (clicks, correct labels, normalised ratings), a
  Beta(prior + successes, prior + failures) posterior where a fractional reward
  counts as a fractional success;
- ``gaussian``: unbounded real rewards with unknown mean and variance, a
  Normal-Inverse-Gamma posterior whose marginal for the mean is a Student t. Its
  prior is worth one pseudo-observation at the pooled mean and variance of all
  arms, so it adapts to the rewards' scale instead of assuming one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

from policies._statistics import ArmStatistics, FloatArray

PosteriorModel = Literal["beta", "gaussian"]

#: Beta(1, 1): a uniform prior on each arm's success rate.
BETA_PRIOR = 1.0
#: Smallest parameter handed to the Beta sampler, guarding against rounding below 0.
_MIN_SHAPE = 1e-9
#: Normal-Inverse-Gamma prior: weight of the prior mean (in observations) and shape.
NIG_PRIOR_WEIGHT = 1.0
NIG_PRIOR_SHAPE = 1.0
#: Integration grid for P(best) and expected loss: points per arm, and the budget of
#: density and CDF evaluations (grid points × arms) that keeps a stats call within tens
#: of milliseconds. Beyond EXACT_MAX_ARMS arms, Monte Carlo is the cheaper road.
MAX_POINTS_PER_ARM = 1024
EVALUATION_BUDGET = 100_000
EXACT_MAX_ARMS = 16
SUMMARY_DRAWS = 20_000
#: Grid points sit at each arm's quantiles of Φ(z) for z evenly spaced in ±GRID_Z: tails are
#: resolved in log-probability (a heavy-tailed t would otherwise get one coarse step from
#: its 1e-9 quantile inward), and 1e-9 of each posterior's mass is left outside per tail.
GRID_Z = 6.0


@dataclass(frozen=True, slots=True)
class StudentT:
    """Marginal posterior of each arm's mean: location, scale and degrees of freedom; shapes (K,)."""

    location: FloatArray
    scale: FloatArray
    dof: FloatArray


def beta_parameters(stats: ArmStatistics) -> tuple[FloatArray, FloatArray]:
    """Posterior (alpha, beta) per arm for rewards in [0, 1]; shapes (K,), (K,)."""
    successes = np.clip(stats.reward_sum, 0.0, stats.pulls)
    alpha = BETA_PRIOR + successes
    beta = BETA_PRIOR + stats.pulls - successes
    return np.maximum(alpha, _MIN_SHAPE), np.maximum(beta, _MIN_SHAPE)


def student_t_parameters(stats: ArmStatistics) -> StudentT:
    """Normal-Inverse-Gamma posterior of each arm's mean, as its Student-t marginal."""
    total = float(stats.pulls.sum())
    prior_mean = float(stats.reward_sum.sum()) / total if total > 0 else 0.0
    pooled_variance = (float(stats.reward_sq_sum.sum()) - total * prior_mean**2) / (total - 1.0) if total > 1 else 1.0
    # A constant reward stream has no variance: keep the scale positive so draws stay finite.
    prior_variance = max(pooled_variance, 1e-12) if total > 1 else 1.0
    prior_rate = NIG_PRIOR_SHAPE * prior_variance

    pulls, means = stats.pulls, stats.means
    squares = np.maximum(stats.reward_sq_sum - pulls * means**2, 0.0)
    weight = NIG_PRIOR_WEIGHT + pulls
    location = (NIG_PRIOR_WEIGHT * prior_mean + pulls * means) / weight
    shape = NIG_PRIOR_SHAPE + pulls / 2.0
    rate = prior_rate + squares / 2.0 + NIG_PRIOR_WEIGHT * pulls * (means - prior_mean) ** 2 / (2.0 * weight)
    return StudentT(location, np.sqrt(rate / (shape * weight)), 2.0 * shape)


def sample_means(stats: ArmStatistics, model: PosteriorModel, rng: np.random.Generator, draws: int) -> FloatArray:
    """Draw each arm's mean reward from its posterior; shape (draws, K)."""
    if model == "beta":
        alpha, beta = beta_parameters(stats)
        return rng.beta(alpha, beta, size=(draws, stats.arms))
    posterior = student_t_parameters(stats)
    return posterior.location + posterior.scale * rng.standard_t(posterior.dof, size=(draws, stats.arms))


def probability_best(samples: FloatArray) -> FloatArray:
    """Share of posterior draws in which each arm has the highest mean; (draws, K) -> (K,)."""
    winners = samples.argmax(axis=1)
    shares: FloatArray = np.bincount(winners, minlength=samples.shape[1]) / samples.shape[0]
    return shares


def expected_loss(samples: FloatArray) -> FloatArray:
    """Mean reward given up by choosing each arm instead of the best; (draws, K) -> (K,)."""
    loss: FloatArray = (samples.max(axis=1, keepdims=True) - samples).mean(axis=0)
    return loss


def _frozen(stats: ArmStatistics, model: PosteriorModel) -> scipy_stats.rv_continuous:
    """The posteriors of all arms as one vectorised scipy distribution."""
    if model == "beta":
        alpha, beta = beta_parameters(stats)
        return scipy_stats.beta(alpha, beta)
    posterior = student_t_parameters(stats)
    return scipy_stats.t(posterior.dof, loc=posterior.location, scale=posterior.scale)


def credible_interval(
    stats: ArmStatistics, model: PosteriorModel, level: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed credible interval of each arm's mean; shapes (K,), (K,)."""
    tail = (1.0 - level) / 2.0
    posterior = _frozen(stats, model)
    return posterior.ppf(tail), posterior.ppf(1.0 - tail)


def _integration_grid(posterior: scipy_stats.rv_continuous, arms: int) -> FloatArray:
    """Points spaced by each arm's own quantiles, merged: every posterior is resolved where
    its mass is, however narrow it is and however wide another (a t with 2 dof) spreads."""
    per_arm = min(MAX_POINTS_PER_ARM, EVALUATION_BUDGET // arms**2)
    levels = special.ndtr(np.linspace(-GRID_Z, GRID_Z, per_arm))[:, None]
    points = posterior.ppf(np.broadcast_to(levels, (per_arm, arms)))
    return np.unique(points[np.isfinite(points)])


def best_arm_summary(
    stats: ArmStatistics, model: PosteriorModel, rng: np.random.Generator | None = None
) -> tuple[FloatArray, FloatArray]:
    """P(each arm is best) and the expected loss of choosing it; two arrays of shape (K,).

    Up to EXACT_MAX_ARMS arms by numerical integration, deterministic where Monte Carlo is
    not: with independent posteriors, P(i best) = ∫ f_i(x) Π_{j≠i} F_j(x) dx, and
    E[max] = lo + ∫ (1 − Π_j F_j(x)) dx over a grid spanning every arm's posterior mass.
    Beyond that, by SUMMARY_DRAWS posterior draws from `rng`.
    """
    if stats.arms > EXACT_MAX_ARMS:
        samples = sample_means(stats, model, rng or np.random.default_rng(), SUMMARY_DRAWS)
        return probability_best(samples), expected_loss(samples)
    posterior = _frozen(stats, model)
    grid = _integration_grid(posterior, stats.arms)
    if grid.size < 2:
        return np.full(stats.arms, 1.0 / stats.arms), np.zeros(stats.arms)
    column = grid[:, None]
    density = posterior.pdf(column)  # (G, K)
    cdf = np.clip(posterior.cdf(column), 1e-300, 1.0)
    all_below = np.prod(cdf, axis=1, keepdims=True)
    # Π_{j≠i} F_j = Π_j F_j / F_i, safe where F_i > 0; where F_i underflows so does the density's weight.
    others_below = all_below / cdf
    p_best = np.clip(np.trapezoid(density * others_below, grid, axis=0), 0.0, None)
    p_best = p_best / p_best.sum() if p_best.sum() > 0 else np.full(stats.arms, 1.0 / stats.arms)
    expected_max = grid[0] + np.trapezoid(1.0 - all_below[:, 0], grid)
    loss = np.maximum(expected_max - posterior.mean(), 0.0)
    return p_best, loss
