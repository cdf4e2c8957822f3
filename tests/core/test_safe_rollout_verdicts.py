"""The pure verdicts behind guardrails and canaries, on exact counts."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from bandit.core.canary import judge_step
from bandit.core.guardrails import WindowCounts, judge_arm, slower_than
from bandit.core.latency_buckets import bucket_of
from bandit.core.models import CanaryProgress, Experiment, GuardrailSettings
from policies import ArmStatistics, ReservedShares, StaticWeights, ThompsonSampling

LIMITS = GuardrailSettings(max_error_rate=0.02, max_p99_ms=250, min_decisions=200)


def _window(requests: int, errors: int, latency_ms: float = 10.0) -> WindowCounts:
    return WindowCounts(requests, errors, {bucket_of(latency_ms): requests - errors})


def test_an_error_rate_well_above_the_limit_breaches_and_one_at_it_does_not() -> None:
    assert judge_arm(LIMITS, _window(300, 30)).breached  # 10 % against 2 %
    at_limit = judge_arm(LIMITS, _window(300, 6))  # 2 %: as likely above as below
    assert not at_limit.breached and 0.3 < (at_limit.p_error_rate_above or 0) < 0.8
    assert not judge_arm(LIMITS, _window(300, 0)).breached


def test_nothing_is_judged_below_min_decisions_however_bad() -> None:
    few = judge_arm(LIMITS, _window(199, 199))
    assert not few.breached and not few.judged and few.p_error_rate_above is None


def test_p99_breaches_when_more_than_one_percent_is_slower_than_the_limit() -> None:
    slow = judge_arm(LIMITS, _window(300, 0, latency_ms=300))
    assert slow.breached and "slower than 250 ms" in (slow.reason or "")
    # 2 of 300 slow answers: under 1 %, the p99 holds.
    window = WindowCounts(300, 0, {bucket_of(10): 298, bucket_of(400): 2})
    assert not judge_arm(LIMITS, window).breached
    assert slower_than({bucket_of(1000): 5, bucket_of(10): 5}, 250) == 5


def _canary(**progress: float) -> Experiment:
    body = {
        "name": "c",
        "arms": [{"name": "base", "url": "http://h"}, {"name": "cand", "url": "http://h"}],
        "policy": {
            "kind": "canary",
            "baseline": "base",
            "candidate": "cand",
            "steps": [5, 50, 100],
            "step_interval_s": 10,
            "min_decisions": 100,
            "max_reward_drop": 0.05,
        },
        "created_at": 1000.0,
    }
    experiment = msgspec.convert(body, Experiment)
    return msgspec.structs.replace(experiment, canary=CanaryProgress(**progress)) if progress else experiment


def _rewards(base: tuple[int, int], cand: tuple[int, int]) -> ArmStatistics:
    pulls = np.array([base[0], cand[0]], dtype=float)
    sums = np.array([base[1], cand[1]], dtype=float)
    return ArmStatistics(pulls, sums, sums, None)


@pytest.mark.parametrize(
    ("now", "decisions", "rewards", "action"),
    [
        (1005.0, 500, ((5000, 4500), (500, 450)), "wait"),  # the interval is not over
        (1011.0, 50, ((5000, 4500), (50, 45)), "wait"),  # too few candidate decisions
        (1011.0, 500, ((5000, 4500), (500, 450)), "advance"),  # as good: on to 50 %
        (1011.0, 500, ((5000, 4500), (500, 250)), "abort"),  # 50 % against 90 %
        (1011.0, 120, ((5000, 4500), (120, 100)), "hold"),  # 83 %: not conclusive either way
        (1101.0, 120, ((5000, 4500), (120, 100)), "abort"),  # still inconclusive after 10 intervals
    ],
)
def test_a_canary_step_waits_advances_holds_or_aborts(
    now: float, decisions: int, rewards: tuple[tuple[int, int], tuple[int, int]], action: str
) -> None:
    verdict = judge_step(_canary(), _rewards(*rewards), decisions, now, None)
    assert verdict.action == action, verdict


def test_the_step_before_the_last_promotes_and_a_breach_aborts_at_once() -> None:
    at_fifty = _canary(step=1, step_started_at=1000.0, decisions_at_start=400)
    assert judge_step(at_fifty, _rewards((5000, 4500), (900, 810)), 900, 1011.0, None).action == "promote"
    assert judge_step(_canary(), _rewards((10, 9), (10, 9)), 5, 1001.0, "error rate 9 %").action == "abort"


def test_reserved_shares_give_the_arm_on_trial_its_share_and_the_policy_the_rest() -> None:
    policy = ReservedShares(StaticWeights((1.0, 3.0)), ((2, 0.2),))
    stats = ArmStatistics(np.zeros(3), np.zeros(3), np.zeros(3), None)
    rng = np.random.default_rng(3)
    assert np.allclose(policy.allocation(stats, rng), [0.2, 0.6, 0.2])
    counts = np.bincount(policy.choose(stats, rng, 100_000), minlength=3) / 100_000
    assert np.allclose(counts, [0.2, 0.6, 0.2], atol=0.01)
    learning = ReservedShares(ThompsonSampling(model="beta"), ((0, 0.1),))
    assert learning.allocation(stats, rng)[0] == pytest.approx(0.1)
