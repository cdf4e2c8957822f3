"""Bandit policies: pure numpy/scipy over sufficient statistics, randomness passed in.

Nothing here performs I/O. A policy turns :class:`ArmStatistics` into a batch of
arm choices (``choose``) and reports the probability of each arm at this moment
(``allocation``), which the service logs as the decision's propensity.
"""

from __future__ import annotations

from policies._base import Policy
from policies._statistics import ArmStatistics
from policies.epsilon_greedy import EpsilonGreedy
from policies.posterior import (
    PosteriorModel,
    credible_interval,
    expected_loss,
    probability_best,
    sample_means,
)
from policies.static import StaticWeights
from policies.thompson import ThompsonSampling

__all__ = [
    "ArmStatistics",
    "EpsilonGreedy",
    "Policy",
    "PosteriorModel",
    "StaticWeights",
    "ThompsonSampling",
    "credible_interval",
    "expected_loss",
    "probability_best",
    "sample_means",
]
