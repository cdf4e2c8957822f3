"""Bandit policies: pure numpy/scipy over sufficient statistics, randomness passed in.

Nothing here performs I/O. A policy turns :class:`ArmStatistics` into a batch of
arm choices (``choose``) and reports the probability of each arm at this moment
(``allocation``), which the service logs as the decision's propensity.
:class:`StatisticsTracker` applies observations the way the service does in Redis.
"""

from __future__ import annotations

from policies._base import Policy
from policies._statistics import ArmStatistics
from policies.change_detection import ChangeAction, PageHinkley
from policies.epsilon_greedy import EpsilonGreedy
from policies.gradient import GradientBandit, GradientStep
from policies.guards import BurnIn, ReservedShares, TrafficFloor
from policies.posterior import (
    PosteriorModel,
    best_arm_summary,
    credible_interval,
    expected_loss,
    probability_best,
    sample_means,
)
from policies.softmax import Softmax
from policies.static import StaticWeights
from policies.thompson import ThompsonSampling
from policies.top_two import TopTwoThompson
from policies.tracker import DetectedChange, StatisticsTracker
from policies.ucb import UCB1

__all__ = [
    "UCB1",
    "ArmStatistics",
    "BurnIn",
    "ChangeAction",
    "DetectedChange",
    "EpsilonGreedy",
    "GradientBandit",
    "GradientStep",
    "PageHinkley",
    "Policy",
    "PosteriorModel",
    "ReservedShares",
    "Softmax",
    "StaticWeights",
    "StatisticsTracker",
    "ThompsonSampling",
    "TopTwoThompson",
    "TrafficFloor",
    "best_arm_summary",
    "credible_interval",
    "expected_loss",
    "probability_best",
    "sample_means",
]
