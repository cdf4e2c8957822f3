"""The policy adapter: from a stored experiment and its counters to a policy, its inputs and its statistics.

Everything that reads an experiment's settings to decide how it learns lives here: which
policy routes it (`build_policy`), what the policy sees (`policy_statistics`), how each
reward updates the counters (`observation_rules`, applied by the feedback script), and
the statistics people read (`experiment_stats`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.guardrails import arm_guardrail
from bandit.core.latency_buckets import quantile
from bandit.core.models import (
    ArmSpec,
    CanarySettings,
    ChangeDetectionSettings,
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
from bandit.core.payloads import (
    ArmStats,
    AutopilotStatus,
    AutopilotVerdict,
    ChangeSummary,
    ExperimentStats,
    LatencySummary,
    SampleRatio,
    SampleRatioCheck,
    StoppingStatus,
    Totals,
)
from bandit.core.regret import regret_estimate
from bandit.core.sample_ratio import decision_check, feedback_check
from policies import (
    UCB1,
    ArmStatistics,
    BurnIn,
    EpsilonGreedy,
    GradientBandit,
    Policy,
    PosteriorModel,
    ReservedShares,
    Softmax,
    StaticWeights,
    ThompsonSampling,
    TopTwoThompson,
    TrafficFloor,
    best_arm_summary,
    credible_interval,
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
        kept = tuple(weights[i] for i in serving)
        # A guardrail capped (or is re-trying) every arm with weight: the others share evenly.
        return StaticWeights(kept if sum(kept) > 0 else (1.0,) * len(kept))
    if isinstance(settings, CanarySettings):
        share = canary_share(experiment)
        names = [experiment.arms[i].name for i in serving]
        return StaticWeights(tuple(share if name == settings.candidate else 100.0 - share for name in names))
    raise TypeError(f"no policy for settings {type(settings).__name__}")


def build_policy(experiment: Experiment, serving: list[int]) -> Policy:
    """The policy object for the experiment's settings, over the arms at `serving`."""
    settings = experiment.policy
    retrying = retrying_shares(experiment, serving)
    reserved = {position for position, _share in retrying} if len(retrying) < len(serving) else set()
    # Arms on trial after a cap get their fixed share; the policy routes the rest among the others.
    others = [index for position, index in enumerate(serving) if position not in reserved]
    policy = _core_policy(experiment, settings, others)
    if isinstance(settings, LearningSettings):
        if settings.min_share > 0:
            policy = TrafficFloor(policy, settings.min_share)
        if settings.burn_in > 0:
            policy = BurnIn(policy, settings.burn_in)
    if reserved:
        policy = ReservedShares(policy, retrying)
    return policy


def canary_share(experiment: Experiment) -> float:
    """The candidate's share of a canary now, in percent (0 when aborted, 100 once promoted)."""
    settings = experiment.policy
    if not isinstance(settings, CanarySettings):
        return 0.0
    if experiment.status == "promoted" and experiment.promoted_arm == settings.candidate:
        return 100.0
    step = experiment.canary.step if experiment.canary is not None else 0
    return settings.steps[min(step, len(settings.steps) - 1)]


def retrying_shares(experiment: Experiment, serving: list[int]) -> tuple[tuple[int, float], ...]:
    """(position in `serving`, share) of the arms re-tried after a guardrail cap."""
    if experiment.guardrails is None or not experiment.capped:
        return ()
    share = experiment.guardrails.retry_share
    retrying = [
        (position, share)
        for position, index in enumerate(serving)
        if (cap := experiment.capped.get(experiment.arms[index].name)) is not None and cap.state == "retrying"
    ]
    # Never more than half of all traffic on arms on trial.
    while retrying and len(retrying) * share > 0.5:
        retrying.pop()
    return tuple(retrying)


def policy_statistics(experiment: Experiment, counters: ArmCounters) -> ArmStatistics:
    """Per-arm statistics on the policy's scale, for every arm of the experiment; shapes (K,).

    Explicit mode counts the rewards received (discounted, and forgotten on a detected
    change, as the policy's settings say); conversion mode counts every decision, one whose
    window is still open by the chance its conversion would have been seen (its exposure), a
    decision with no conversion being a reward of 0. Bounded rewards are scaled to
    [0, 1] so one Beta model serves clicks, labels and ratings alike.
    """
    if experiment.reward.mode == "conversion":
        # Pending decisions count by the chance their conversion would be seen by now (and
        # never below the conversions counted): bandit/core/pending_conversions.py.
        adjusted = counters.exposure is not None and experiment.reward.pending == "exposure"
        exposed = counters.exposure if adjusted and counters.exposure is not None else counters.decisions
        pulls = np.maximum(exposed, counters.rewards)
    else:
        pulls = counters.policy_pulls
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
    """Indices of the arms that may take traffic now (the pinned one, or every non-shadow arm not capped)."""
    pinned = experiment.pinned_arm()
    if pinned is not None:
        return [next(i for i, arm in enumerate(experiment.arms) if arm.name == pinned)]
    serving = [i for i, arm in enumerate(experiment.arms) if not arm.shadow]
    # Arms a guardrail capped take no traffic; should all be capped, all serve (nothing better to do).
    capped = {name for name, cap in experiment.capped.items() if cap.state == "capped"}
    uncapped = [i for i in serving if experiment.arms[i].name not in capped]
    return uncapped or serving


def allocation(
    experiment: Experiment, statistics: ArmStatistics, rng: np.random.Generator, policy: Policy | None = None
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
        shares[index] = policy.allocation(statistics.subset(index), rng)
    return shares


@dataclass(frozen=True, slots=True)
class ObservationRules:
    """Arguments of the feedback script that depend on the experiment's policy."""

    discount: float = 1.0
    change_detection: ChangeDetectionSettings | None = None
    gradient: GradientSettings | None = None
    # Arms whose policy state is shared (gradient softmax, reset of every arm).
    serving_arms: tuple[str, ...] = ()


def observation_rules(experiment: Experiment) -> ObservationRules:
    policy = experiment.policy
    serving = tuple(arm.name for arm in experiment.arms if not arm.shadow)
    if not isinstance(policy, LearningSettings):
        return ObservationRules(serving_arms=serving)
    return ObservationRules(
        discount=policy.discount,
        change_detection=policy.change_detection,
        gradient=policy if isinstance(policy, GradientSettings) else None,
        serving_arms=serving,
    )


def policy_discount(experiment: Experiment) -> float:
    policy = experiment.policy
    return policy.discount if isinstance(policy, LearningSettings) else 1.0


def experiment_stats(
    experiment: Experiment,
    counters: ArmCounters,
    latencies: dict[str, dict[int, int]],
    health_of: Callable[[ArmSpec], str],
    rng: np.random.Generator,
    verdict: AutopilotVerdict | None = None,
    now: float | None = None,
) -> ExperimentStats:
    """Assemble the stats response from the experiment's counters (and the acting replica's last
    verdict); a canary's progress is added by bandit.core.canary.with_canary_status."""
    now = time.time() if now is None else now
    statistics = policy_statistics(experiment, counters)
    model = posterior_model(experiment)
    shares = allocation(experiment, statistics, rng)

    # P(best) and loss compare the arms that serve traffic; shadow arms are observed, not chosen.
    contenders = np.asarray([i for i, arm in enumerate(experiment.arms) if not arm.shadow])
    p_best = np.zeros(len(experiment.arms))
    loss = np.zeros(len(experiment.arms))
    p_best[contenders], loss[contenders] = best_arm_summary(statistics.subset(contenders), model, rng)

    lower, upper = credible_interval(statistics, model)
    # The policy's statistics are scaled to [0, 1] when rewards are bounded: report in reward units.
    offset, width = reward_scale(experiment)
    lower, upper, loss = offset + width * lower, offset + width * upper, width * loss
    means = offset + width * statistics.means

    arms: list[ArmStats] = []
    for i, arm in enumerate(experiment.arms):
        pulls = statistics.pulls[i]
        histogram = latencies.get(arm.name, {})
        arms.append(
            ArmStats(
                name=arm.name,
                shadow=arm.shadow,
                decisions=int(counters.decisions[i]),
                rewards=int(counters.rewards[i]),
                reward_sum=float(counters.reward_sum[i]),
                mean=float(means[i]) if pulls > 0 else None,
                interval=((float(lower[i]), float(upper[i])) if pulls > 0 else None),
                effective_rewards=float(pulls),
                p_best=float(p_best[i]),
                expected_loss=float(loss[i]),
                allocation=float(shares[i]),
                latency_ms=LatencySummary(p50=quantile(histogram, 0.5), p99=quantile(histogram, 0.99)),
                errors=int(counters.errors[i]),
                healthy=health_of(arm) != "ejected",
                health=health_of(arm),
                mirror_dropped=int(counters.mirror_dropped[i]),
                changes=ChangeSummary(
                    detected=int(counters.changes[i]),
                    last_at=float(counters.last_change_at[i]) or None,
                ),
                expected_decisions=float(counters.expected[i]),
                guardrail=arm_guardrail(experiment, arm.name, verdict),
            )
        )
    observed = bool(statistics.pulls[contenders].sum() > 0)
    leader_index = int(contenders[np.argmax(p_best[contenders])])
    leader = experiment.arms[leader_index].name if observed else None
    rule = experiment.stopping
    # Every contender must have been observed: a never-tried arm's prior is no evidence against it.
    met = bool(
        observed
        and (statistics.pulls[contenders] > 0).all()
        and p_best[leader_index] >= rule.p_best
        and loss[leader_index] <= rule.expected_loss
    )
    return ExperimentStats(
        experiment=experiment.name,
        status=experiment.status,
        policy=str(type(experiment.policy).__struct_config__.tag),
        leader=leader,
        totals=Totals(
            decisions=int(counters.decisions.sum()),
            rewards=int(counters.rewards.sum()),
            reward_sum=float(counters.reward_sum.sum()),
        ),
        arms=arms,
        stopping=StoppingStatus(
            met=met,
            arm=leader if met else None,
            p_best_threshold=rule.p_best,
            expected_loss_threshold=rule.expected_loss,
        ),
        generated_at=now,
        sample_ratio=sample_ratio(experiment, counters),
        regret=regret_estimate(arms, leader),
        autopilot=(
            AutopilotStatus(held=experiment.autopilot_held, judged_at=verdict.judged_at if verdict else None)
            if experiment.automated()
            else None
        ),
    )


#: Below this share of decisions with an expected count booked, the decision check is not made.
UNBOOKED_TOLERANCE = 0.9


def sample_ratio(experiment: Experiment, counters: ArmCounters) -> SampleRatio:
    """The sample-ratio checks over the serving arms (bandit/core/sample_ratio.py)."""
    serving = [i for i, arm in enumerate(experiment.arms) if not arm.shadow]
    decisions = counters.decisions[serving]
    # Requests an arm answered, well or with a 5xx: the traffic it got (a failed connection
    # retried elsewhere counts on both arms, and shows as the mismatch it is).
    requests = decisions + counters.errors[serving]
    expected = counters.expected[serving]
    explicit = experiment.reward.mode == "explicit"
    if expected.sum() < UNBOOKED_TOLERANCE * decisions.sum():
        reason = "most decisions were made by a release that booked no expected decisions: reset to check"
        checked = SampleRatioCheck(p_value=None, flagged=False, reason=reason)
    else:
        checked = decision_check(requests.tolist(), expected.tolist())
    return SampleRatio(
        decisions=checked,
        feedback=feedback_check(decisions.tolist(), counters.rewards[serving].tolist()) if explicit else None,
    )
