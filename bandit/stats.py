"""The stats of an experiment as people read them: means, intervals, P(best), latency, stopping."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bandit.latency_histogram import quantile
from bandit.models import ArmSpec, Experiment
from bandit.payloads import ArmStats, ChangeSummary, ExperimentStats, LatencySummary, StoppingStatus, Totals
from bandit.policy_inputs import allocation, policy_statistics, posterior_model, reward_scale
from bandit.store import ArmCounters
from policies import best_arm_summary, credible_interval


def experiment_stats(
    experiment: Experiment,
    counters: ArmCounters,
    latencies: dict[str, dict[int, int]],
    health_of: Callable[[ArmSpec], str],
    rng: np.random.Generator,
) -> ExperimentStats:
    """Assemble the stats response from the experiment's counters."""
    stats = policy_statistics(experiment, counters)
    model = posterior_model(experiment)
    shares = allocation(experiment, stats, rng)

    # P(best) and loss compare the arms that serve traffic; shadow arms are observed, not chosen.
    contenders = np.asarray([i for i, arm in enumerate(experiment.arms) if not arm.shadow])
    p_best = np.zeros(len(experiment.arms))
    loss = np.zeros(len(experiment.arms))
    p_best[contenders], loss[contenders] = best_arm_summary(stats.subset(contenders), model, rng)

    lower, upper = credible_interval(stats, model)
    # The policy's statistics are scaled to [0, 1] when rewards are bounded: report in reward units.
    offset, width = reward_scale(experiment)
    lower, upper, loss = offset + width * lower, offset + width * upper, width * loss
    means = offset + width * stats.means

    arms: list[ArmStats] = []
    for i, arm in enumerate(experiment.arms):
        pulls = stats.pulls[i]
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
            )
        )
    observed = bool(stats.pulls[contenders].sum() > 0)
    leader_index = int(contenders[np.argmax(p_best[contenders])])
    leader = experiment.arms[leader_index].name if observed else None
    rule = experiment.stopping
    # Every contender must have been observed: a never-tried arm's prior is no evidence against it.
    met = bool(
        observed
        and (stats.pulls[contenders] > 0).all()
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
        generated_at=time.time(),
    )
