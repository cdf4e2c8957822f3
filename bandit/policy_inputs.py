"""From a stored experiment and its Redis counters to a policy and its inputs."""

from __future__ import annotations

import numpy as np

from bandit.models import (
    EpsilonGreedySettings,
    Experiment,
    GradientSettings,
    LearningSettings,
    PolicySettings,
    SoftmaxSettings,
    StaticSettings,
    ThompsonSettings,
    TopTwoThompsonSettings,
    UCB1Settings,
)
from bandit.store import ArmCounters
from policies import (
    UCB1,
    ArmStatistics,
    BurnIn,
    EpsilonGreedy,
    GradientBandit,
    Policy,
    PosteriorModel,
    Softmax,
    StaticWeights,
    ThompsonSampling,
    TopTwoThompson,
    TrafficFloor,
)


def posterior_model(experiment: Experiment) -> PosteriorModel:
    """Beta for rewards bounded to [0, 1] after scaling, Gaussian otherwise.

    A latency penalty pushes rewards below the feedback's lower bound by an amount with
    no fixed limit, so penalised rewards are treated as unbounded real numbers.
    """
    policy = experiment.policy
    if isinstance(policy, ThompsonSettings | TopTwoThompsonSettings) and policy.model != "auto":
        return policy.model
    return "beta" if rewards_bounded(experiment) else "gaussian"


def rewards_bounded(experiment: Experiment) -> bool:
    return experiment.reward.bounds is not None and experiment.reward.latency_penalty == 0


def _core_policy(experiment: Experiment, settings: PolicySettings, serving: list[int]) -> Policy:
    if isinstance(settings, EpsilonGreedySettings):
        return EpsilonGreedy(epsilon=settings.epsilon, decay=settings.decay)
    if isinstance(settings, ThompsonSettings):
        return ThompsonSampling(model=posterior_model(experiment))
    if isinstance(settings, TopTwoThompsonSettings):
        return TopTwoThompson(beta=settings.beta, model=posterior_model(experiment))
    if isinstance(settings, UCB1Settings):
        return UCB1(c=settings.c, variance_aware=settings.variance_aware, bounded=rewards_bounded(experiment))
    if isinstance(settings, SoftmaxSettings):
        return Softmax(temperature=settings.temperature, decay=settings.decay)
    if isinstance(settings, GradientSettings):
        return GradientBandit()
    if isinstance(settings, StaticSettings):
        weights = experiment.static_weights()
        return StaticWeights(tuple(weights[i] for i in serving))
    raise TypeError(f"no policy for settings {type(settings).__name__}")


def build_policy(experiment: Experiment, serving: list[int]) -> Policy:
    """The policy object for the experiment's settings, over the arms at `serving`."""
    settings = experiment.policy
    policy = _core_policy(experiment, settings, serving)
    if isinstance(settings, LearningSettings):
        if settings.min_share > 0:
            policy = TrafficFloor(policy, settings.min_share)
        if settings.burn_in > 0:
            policy = BurnIn(policy, settings.burn_in)
    return policy


def policy_statistics(experiment: Experiment, counters: ArmCounters) -> ArmStatistics:
    """Per-arm statistics on the policy's scale, for every arm of the experiment; shapes (K,).

    Explicit mode counts the rewards received (discounted, and forgotten on a detected
    change, as the policy's settings say); conversion mode counts every decision, a
    decision with no conversion being a reward of 0. Bounded rewards are scaled to
    [0, 1] so one Beta model serves clicks, labels and ratings alike.
    """
    pulls = counters.decisions if experiment.reward.mode == "conversion" else counters.policy_pulls
    total, squares = counters.policy_sum, counters.policy_sq_sum
    if experiment.reward.bounds is not None:
        lower, width = reward_scale(experiment)
        # (r - lower) / width, summed: sums and sums of squares of the scaled rewards.
        scaled_total = (total - lower * pulls) / width
        squares = (squares - 2 * lower * total + lower**2 * pulls) / width**2
        total = scaled_total
    preferences = counters.preferences if isinstance(experiment.policy, GradientSettings) else None
    return ArmStatistics(pulls.astype(np.float64), total, squares, preferences)


def reward_scale(experiment: Experiment) -> tuple[float, float]:
    """(offset, width) mapping rewards onto the policy's scale: (r − offset) / width."""
    if experiment.reward.bounds is None:
        return 0.0, 1.0
    lower, upper = experiment.reward.bounds
    return lower, upper - lower


def serving_arms(experiment: Experiment) -> list[int]:
    """Indices of the arms that may take traffic now (the pinned one, or every non-shadow arm)."""
    pinned = experiment.pinned_arm()
    if pinned is not None:
        return [next(i for i, arm in enumerate(experiment.arms) if arm.name == pinned)]
    return [i for i, arm in enumerate(experiment.arms) if not arm.shadow]


def allocation(
    experiment: Experiment, stats: ArmStatistics, rng: np.random.Generator, policy: Policy | None = None
) -> np.ndarray:
    """Share of the next decisions per arm, 0 for shadow arms; shape (K,).

    Pass the `policy` already built for the serving arms to avoid building it again.
    """
    serving = serving_arms(experiment)
    shares = np.zeros(len(experiment.arms))
    if experiment.pinned_arm() is not None:
        shares[serving] = 1.0
    else:
        index = np.asarray(serving)
        policy = policy or build_policy(experiment, serving)
        shares[index] = policy.allocation(stats.subset(index), rng)
    return shares
