"""What the store's policy-statistics tests share: three arms, an experiment of a given policy,
and the in-process tracker (policies.StatisticsTracker) that the Lua script must agree with."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.models import ExperimentSpec, GradientSettings, LearningSettings
from policies import GradientStep, PageHinkley, StatisticsTracker

ARMS = ["a", "b", "c"]


def spec(policy: dict[str, Any], name: str) -> ExperimentSpec:
    arms = [{"name": arm, "url": f"http://127.0.0.1:{9000 + i}"} for i, arm in enumerate(ARMS)]
    return msgspec.convert({"name": name, "arms": arms, "policy": policy}, ExperimentSpec)


def tracker_for(experiment: ExperimentSpec) -> StatisticsTracker:
    policy = experiment.policy
    assert isinstance(policy, LearningSettings)
    detector = policy.change_detection
    return StatisticsTracker(
        len(ARMS),
        discount=policy.discount,
        change_detection=PageHinkley(detector.delta, detector.threshold, detector.action) if detector else None,
        gradient=(
            GradientStep(policy.step_size, policy.momentum, policy.baseline)
            if isinstance(policy, GradientSettings)
            else None
        ),
    )


def observations(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(arm index, reward) of each step: arm c's rate collapses half way, so the detectors have
    something to find; the others' rewards are uniform in [0, 0.6)."""
    arms = rng.choice(len(ARMS), size=steps, p=[0.3, 0.3, 0.4])
    rates = np.where(np.arange(steps) < steps // 2, 0.8, 0.1)
    rewards = np.where(arms == 2, rng.random(steps) < rates, rng.random(steps) * 0.6)
    return arms, rewards


def assert_agrees(counters: ArmCounters, tracker: StatisticsTracker) -> None:
    """The policy's statistics in Redis are the tracker's, to 1e-9, and so are the detected changes."""
    expected = tracker.statistics
    np.testing.assert_allclose(counters.policy_pulls, expected.pulls, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(counters.policy_sum, expected.reward_sum, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(counters.policy_sq_sum, expected.reward_sq_sum, rtol=1e-9, atol=1e-9)
    if expected.preferences is not None:
        np.testing.assert_allclose(counters.preferences, expected.preferences, rtol=1e-9, atol=1e-9)
    detected = np.bincount([change.arm for change in tracker.changes], minlength=len(ARMS))
    assert counters.changes.tolist() == detected.tolist()
