"""From a stored experiment and its Redis counters to a policy and its inputs."""

from __future__ import annotations

import numpy as np

from bandit.models import EpsilonGreedySettings, Experiment, StaticSettings, ThompsonSettings
from bandit.store import ArmCounters
from policies import ArmStatistics, EpsilonGreedy, Policy, PosteriorModel, StaticWeights, ThompsonSampling


def posterior_model(experiment: Experiment) -> PosteriorModel:
    """Beta for bounded rewards (scaled to [0, 1]), Gaussian for unbounded ones."""
    policy = experiment.policy
    if isinstance(policy, ThompsonSettings) and policy.model != "auto":
        return policy.model
    return "beta" if experiment.reward.bounds is not None else "gaussian"


def build_policy(experiment: Experiment, serving: list[int]) -> Policy:
    """The policy object for the experiment's settings, over the arms at `serving`."""
    settings = experiment.policy
    if isinstance(settings, EpsilonGreedySettings):
        return EpsilonGreedy(epsilon=settings.epsilon, decay=settings.decay)
    if isinstance(settings, ThompsonSettings):
        return ThompsonSampling(model=posterior_model(experiment))
    if isinstance(settings, StaticSettings):
        weights = experiment.static_weights()
        return StaticWeights(tuple(weights[i] for i in serving))
    raise TypeError(f"no policy for settings {type(settings).__name__}")


def policy_statistics(experiment: Experiment, counters: ArmCounters) -> ArmStatistics:
    """Per-arm statistics on the policy's scale, for every arm of the experiment; shapes (K,).

    Explicit mode counts the rewards received; conversion mode counts every decision,
    a decision with no conversion being a reward of 0. Bounded rewards are scaled to
    [0, 1] so one Beta model serves clicks, labels and ratings alike.
    """
    pulls = counters.decisions if experiment.reward.mode == "conversion" else counters.rewards
    total, squares = counters.reward_sum, counters.reward_sq_sum
    if experiment.reward.bounds is not None:
        lower, upper = experiment.reward.bounds
        width = upper - lower
        # (r - lower) / width, summed: sums and sums of squares of the scaled rewards.
        scaled_total = (total - lower * pulls) / width
        squares = (squares - 2 * lower * total + lower**2 * pulls) / width**2
        total = scaled_total
    return ArmStatistics(pulls.astype(np.float64), total, squares)


def serving_arms(experiment: Experiment) -> list[int]:
    """Indices of the arms that may take traffic now (the pinned one, or every non-shadow arm)."""
    pinned = experiment.pinned_arm()
    if pinned is not None:
        return [next(i for i, arm in enumerate(experiment.arms) if arm.name == pinned)]
    return [i for i, arm in enumerate(experiment.arms) if not arm.shadow]


def allocation(experiment: Experiment, stats: ArmStatistics, rng: np.random.Generator) -> np.ndarray:
    """Share of the next decisions per arm, 0 for shadow arms; shape (K,)."""
    serving = serving_arms(experiment)
    shares = np.zeros(len(experiment.arms))
    if experiment.pinned_arm() is not None:
        shares[serving] = 1.0
    else:
        index = np.asarray(serving)
        shares[index] = build_policy(experiment, serving).allocation(stats.subset(index), rng)
    return shares
