"""What the traffic so far cost against always serving the current leader (stats and the dashboard)."""

from __future__ import annotations

from collections.abc import Sequence

from bandit.core.payloads import ArmStats, RegretEstimate


def regret_estimate(arms: Sequence[ArmStats], leader_name: str | None) -> RegretEstimate:
    """Σ decisions_i × (mean_leader − mean_i) over the serving arms, and the leader's lift."""
    serving = [arm for arm in arms if not arm.shadow and arm.mean is not None]
    leader = next((arm for arm in serving if arm.name == leader_name), None)
    if leader is None or leader.mean is None:
        return RegretEstimate(leader=None, regret=0.0, lift=None)
    regret = sum(arm.decisions * (leader.mean - arm.mean) for arm in serving if arm.mean is not None)
    rewards = sum(arm.rewards for arm in serving)
    obtained = sum(arm.reward_sum for arm in serving) / rewards if rewards else None
    lift = (leader.mean - obtained) / abs(obtained) if obtained else None
    return RegretEstimate(leader=leader.name, regret=float(regret), lift=lift)
