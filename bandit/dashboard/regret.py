"""What the traffic so far cost against always serving the current leader, as the dashboard shows it."""

from __future__ import annotations

import msgspec

from bandit.core.payloads import ExperimentStats


class RegretEstimate(msgspec.Struct, kw_only=True):
    """What the traffic so far cost against always serving the current leader.

    `regret` is Σ decisions_i × (mean_leader − mean_i) over serving arms, in reward units,
    with today's estimated means; `lift` is how much higher the leader's mean is than the
    mean reward actually obtained, as a fraction of the latter (None when undefined).
    """

    leader: str | None
    regret: float
    lift: float | None


def regret_estimate(stats: ExperimentStats) -> RegretEstimate:
    serving = [arm for arm in stats.arms if not arm.shadow and arm.mean is not None]
    leader = next((arm for arm in serving if arm.name == stats.leader), None)
    if leader is None or leader.mean is None:
        return RegretEstimate(leader=None, regret=0.0, lift=None)
    regret = sum(arm.decisions * (leader.mean - arm.mean) for arm in serving if arm.mean is not None)
    rewards = sum(arm.rewards for arm in serving)
    obtained = sum(arm.reward_sum for arm in serving) / rewards if rewards else None
    lift = (leader.mean - obtained) / abs(obtained) if obtained else None
    return RegretEstimate(leader=leader.name, regret=float(regret), lift=lift)
