"""The stats of an experiment as people read them: means, intervals, P(best), latency."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bandit.latency_histogram import quantile
from bandit.models import Experiment
from bandit.payloads import ArmStats, ExperimentStats, LatencySummary, Totals
from bandit.policy_inputs import allocation, policy_statistics, posterior_model
from bandit.store import ArmCounters
from policies import credible_interval, expected_loss, probability_best, sample_means

#: Posterior draws behind P(best) and expected loss: standard error below 0.5 %.
SUMMARY_DRAWS = 10_000


def experiment_stats(
    experiment: Experiment,
    counters: ArmCounters,
    latencies: dict[str, dict[int, int]],
    is_healthy: Callable[[str], bool],
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
    samples = sample_means(stats.subset(contenders), model, rng, SUMMARY_DRAWS)
    p_best[contenders] = probability_best(samples)
    loss[contenders] = expected_loss(samples)

    lower, upper = credible_interval(stats, model)
    # The policy's statistics are scaled to [0, 1] when rewards are bounded: report in reward units.
    offset, width = (0.0, 1.0)
    if experiment.reward.bounds is not None:
        offset, width = experiment.reward.bounds[0], experiment.reward.bounds[1] - experiment.reward.bounds[0]
    lower, upper, loss = offset + width * lower, offset + width * upper, width * loss

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
                mean=float(counters.reward_sum[i] / pulls) if pulls > 0 else None,
                interval=((float(lower[i]), float(upper[i])) if pulls > 0 else None),
                p_best=float(p_best[i]),
                expected_loss=float(loss[i]),
                allocation=float(shares[i]),
                latency_ms=LatencySummary(p50=quantile(histogram, 0.5), p99=quantile(histogram, 0.99)),
                errors=int(counters.errors[i]),
                healthy=is_healthy(arm.name),
            )
        )
    leader = experiment.arms[int(contenders[np.argmax(p_best[contenders])])].name if stats.pulls.sum() > 0 else None
    return ExperimentStats(
        experiment=experiment.name,
        status=experiment.status,
        policy=type(experiment.policy).__struct_config__.tag,  # type: ignore[attr-defined]
        leader=leader,
        totals=Totals(
            decisions=int(counters.decisions.sum()),
            rewards=int(counters.rewards.sum()),
            reward_sum=float(counters.reward_sum.sum()),
        ),
        arms=arms,
        generated_at=time.time(),
    )
