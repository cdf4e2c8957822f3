"""Canary verdicts: is the candidate's current step done, and may it go on?

The reward comparison is the normal approximation to the difference of the two arms'
posterior means (Beta for bounded rewards, as the policies use; the sample mean's
standard error otherwise): P(μ_candidate − μ_baseline > −max_reward_drop). Rewards are
counted over the whole canary, not one step: the arms' rewards do not depend on the share
they get, and every step adds evidence to the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import msgspec
from scipy import stats

from bandit.core.counters import ArmCounters
from bandit.core.models import CanaryProgress, CanarySettings, Experiment
from bandit.core.payloads import AutopilotVerdict, CanaryStatus, ExperimentStats
from bandit.core.policy_adapter import canary_share, policy_statistics, posterior_model, reward_scale
from policies import ArmStatistics

CONFIDENCE = 0.95
#: Rewards each arm needs before the two are compared (until then a step holds).
MIN_REWARDS = 30

CanaryAction = Literal["wait", "hold", "advance", "promote", "abort"]
#: How stats name a running canary's step by what it calls for.
_STATES = {"wait": "waiting", "hold": "holding", "advance": "advancing", "promote": "promoting", "abort": "aborting"}


@dataclass(frozen=True, slots=True)
class CanaryVerdict:
    action: CanaryAction
    reason: str
    decisions_in_step: int
    p_not_worse: float | None
    p_worse: float | None


def progress_of(experiment: Experiment) -> CanaryProgress:
    return experiment.canary if experiment.canary is not None else CanaryProgress(step_started_at=experiment.created_at)


def _posterior(statistics: ArmStatistics, index: int, beta: bool) -> tuple[float, float] | None:
    """Mean and variance of an arm's mean reward on the policy's scale, or None with too little data."""
    pulls, total = float(statistics.pulls[index]), float(statistics.reward_sum[index])
    if pulls < MIN_REWARDS:
        return None  # too few rewards for the normal approximation to be trusted either way
    if beta:
        a, b = 1.0 + total, 1.0 + max(0.0, pulls - total)
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1.0))
    if pulls < 2:
        return None
    return total / pulls, float(statistics.variances[index]) / pulls


def compare(experiment: Experiment, statistics: ArmStatistics) -> tuple[float, float] | None:
    """(P(candidate no worse than the drop), P(candidate worse than the drop)), or None."""
    settings = experiment.policy
    assert isinstance(settings, CanarySettings)
    names = [arm.name for arm in experiment.arms]
    beta = posterior_model(experiment) == "beta"
    baseline = _posterior(statistics, names.index(settings.baseline), beta)
    candidate = _posterior(statistics, names.index(settings.candidate), beta)
    if baseline is None or candidate is None:
        return None
    _, width = reward_scale(experiment)
    drop = settings.max_reward_drop / width
    difference = candidate[0] - baseline[0]
    spread = math.sqrt(candidate[1] + baseline[1])
    if spread == 0:
        return (1.0, 0.0) if difference > -drop else (0.0, 1.0)
    return float(stats.norm.cdf((difference + drop) / spread)), float(stats.norm.cdf((-drop - difference) / spread))


def judge_step(
    experiment: Experiment,
    statistics: ArmStatistics,
    candidate_decisions: int,
    now: float,
    candidate_breach: str | None,
) -> CanaryVerdict:
    """What the canary's current step calls for now; `candidate_breach` names a guardrail the candidate breaks."""
    settings = experiment.policy
    assert isinstance(settings, CanarySettings)
    progress = progress_of(experiment)
    if progress.decisions_at_start < 0:
        return CanaryVerdict("wait", "the step starts at the next look", 0, None, None)
    # Counters are cumulative; after a reset of the statistics they restart below the mark.
    start = progress.decisions_at_start if progress.decisions_at_start <= candidate_decisions else 0
    in_step = candidate_decisions - start
    if candidate_breach is not None:
        return CanaryVerdict("abort", f"the candidate breaches its guardrails: {candidate_breach}", in_step, None, None)
    elapsed = now - progress.step_started_at
    overdue = elapsed >= settings.max_step_intervals * settings.step_interval_s
    if elapsed < settings.step_interval_s or in_step < settings.min_decisions:
        if overdue:
            reason = f"{in_step} of the {settings.min_decisions} decisions the step needs in {elapsed:.0f} s"
            return CanaryVerdict("abort", reason, in_step, None, None)
        return CanaryVerdict("wait", "the step's interval or decisions are not complete", in_step, None, None)
    odds = compare(experiment, statistics)
    p_not_worse, p_worse = odds if odds is not None else (None, None)
    if p_worse is not None and p_worse >= CONFIDENCE:
        reason = f"the candidate's reward is below the baseline's by more than {settings.max_reward_drop:g}"
        return CanaryVerdict("abort", f"{reason} (P = {p_worse:.3f})", in_step, p_not_worse, p_worse)
    if p_not_worse is not None and p_not_worse >= CONFIDENCE:
        last = progress.step + 1 >= len(settings.steps) - 1
        action: CanaryAction = "promote" if last else "advance"
        reason = f"the candidate is no worse than the baseline by {settings.max_reward_drop:g} (P = {p_not_worse:.3f})"
        return CanaryVerdict(action, reason, in_step, p_not_worse, p_worse)
    if overdue:
        reason = f"no conclusive reward comparison within {settings.max_step_intervals} step intervals"
        return CanaryVerdict("abort", reason, in_step, p_not_worse, p_worse)
    return CanaryVerdict("hold", "the reward comparison is not conclusive yet", in_step, p_not_worse, p_worse)


def candidate_breach(experiment: Experiment, verdict: AutopilotVerdict | None) -> str | None:
    """The reason the canary's candidate breaches its guardrails, per the current verdict, or None."""
    settings = experiment.policy
    if not isinstance(settings, CanarySettings) or verdict is None or verdict.version != experiment.version:
        return None
    figures = verdict.guardrails.get(settings.candidate)
    return figures.reason if figures is not None and figures.breached else None


def canary_status(
    experiment: Experiment,
    statistics: ArmStatistics,
    counters: ArmCounters,
    now: float,
    verdict: AutopilotVerdict | None,
) -> CanaryStatus | None:
    """What stats show of a canary: its step, and what the step waits for (None: no canary)."""
    settings = experiment.policy
    if not isinstance(settings, CanarySettings):
        return None
    progress = progress_of(experiment)
    candidate = [arm.name for arm in experiment.arms].index(settings.candidate)
    judged = judge_step(
        experiment, statistics, int(counters.decisions[candidate]), now, candidate_breach(experiment, verdict)
    )
    state = experiment.status if experiment.status != "running" else _STATES[judged.action]
    return CanaryStatus(
        step=progress.step,
        steps=list(settings.steps),
        candidate_share=0.0 if experiment.status in ("aborted", "paused") else canary_share(experiment),
        step_started_at=progress.step_started_at,
        decisions_in_step=judged.decisions_in_step,
        state=state,
        p_not_worse=judged.p_not_worse,
        reason=judged.reason,
    )


def with_canary_status(
    stats: ExperimentStats, experiment: Experiment, counters: ArmCounters, verdict: AutopilotVerdict | None
) -> ExperimentStats:
    """`stats` with the canary's progress (unchanged for other policies)."""
    if not isinstance(experiment.policy, CanarySettings):
        return stats
    statistics = policy_statistics(experiment, counters)
    status = canary_status(experiment, statistics, counters, stats.generated_at, verdict)
    return msgspec.structs.replace(stats, canary=status)
