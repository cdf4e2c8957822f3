"""Off-policy evaluation: what another policy would have earned on the logged traffic.

For logged decisions (arm a_t, reward r_t, propensity p_t: the probability the logging policy
gave a_t) and a target policy π (a distribution over the arms), with weights w_t = π(a_t) / p_t:

- IPS: mean of w_t · r_t (unbiased when every arm π plays was logged with p_t > 0);
- self-normalised IPS: Σ w_t r_t / Σ w_t (a little biased, far less variable);
- doubly robust: mean of Σ_a π(a) q(a) + w_t (r_t − q(a_t)), with q(a) each arm's mean logged
  reward (unbiased if either q or the propensities are right; tighter than IPS when q is good).

Each comes with a 95 % interval from the normal approximation of its mean of terms (for
SNIPS by the delta method), and the effective sample size (Σ w)² / Σ w² says how many
decisions the estimate is really worth. The formulas are those of Open Bandit Pipeline's
`InverseProbabilityWeighting`, `SelfNormalizedInverseProbabilityWeighting` and `DoublyRobust`
with a context-free reward model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bandit.core.payloads import Estimate

Z_95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class LoggedData:
    """Decisions with a reward: arm indices, rewards and the logging propensities; shapes (n,)."""

    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray


def _interval(terms: np.ndarray, value: float) -> Estimate:
    n = terms.shape[0]
    spread = float(np.std(terms, ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(value=value, lower=value - Z_95 * spread, upper=value + Z_95 * spread)


def reward_model(data: LoggedData, arms: int) -> np.ndarray:
    """Each arm's mean logged reward (0 for an arm never logged); shape (K,)."""
    totals = np.bincount(data.actions, weights=data.rewards, minlength=arms)
    counts = np.bincount(data.actions, minlength=arms)
    return np.divide(totals, counts, out=np.zeros(arms), where=counts > 0)


def ips(data: LoggedData, target: np.ndarray) -> Estimate:
    terms = target[data.actions] / data.propensities * data.rewards
    return _interval(terms, float(terms.mean()))


def snips(data: LoggedData, target: np.ndarray) -> Estimate:
    weights = target[data.actions] / data.propensities
    value = float((weights * data.rewards).sum() / weights.sum())
    # Delta method: the ratio's influence terms.
    terms = weights * (data.rewards - value) / weights.mean()
    spread = float(np.std(terms, ddof=1)) / math.sqrt(terms.shape[0])
    return Estimate(value=value, lower=value - Z_95 * spread, upper=value + Z_95 * spread)


def doubly_robust(data: LoggedData, target: np.ndarray) -> Estimate:
    model = reward_model(data, target.shape[0])
    weights = target[data.actions] / data.propensities
    terms = float(target @ model) + weights * (data.rewards - model[data.actions])
    return _interval(terms, float(terms.mean()))


def effective_sample_size(data: LoggedData, target: np.ndarray) -> float:
    weights = target[data.actions] / data.propensities
    squares = float((weights**2).sum())
    return float(weights.sum()) ** 2 / squares if squares > 0 else 0.0
