"""The Lua feedback update in a real Redis and `policies.StatisticsTracker` agree to the last digit.

The tracker is what the regret benchmark runs in process; the Lua script is what the
service runs. Discounting, Page-Hinkley alarms with each action, and gradient
preferences are driven through both with the same observations, in uneven batches.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from bandit.core.models import ExperimentSpec
from bandit.core.policy_adapter import observation_rules, policy_discount
from bandit.store import keys
from bandit.store.counters import FeedbackRecord
from bandit.store.redis_store import RedisStore
from tests.store import mirror
from tests.store.mirror import ARMS, assert_agrees, observations, tracker_for


def spec(policy: dict[str, Any]) -> ExperimentSpec:
    return mirror.spec(policy, "mirror")


@pytest.mark.parametrize(
    "policy",
    [
        {"kind": "thompson", "discount": 0.97},
        {"kind": "thompson", "discount": 0.99, "change_detection": {"threshold": 3, "action": "reset_all"}},
        {"kind": "ucb1", "change_detection": {"delta": 0.02, "threshold": 2, "action": "reset_arm"}},
        {"kind": "softmax", "discount": 0.95, "change_detection": {"threshold": 2, "action": "flag"}},
        {"kind": "gradient", "step_size": 0.3, "momentum": 0.5},
        {
            "kind": "gradient",
            "step_size": 0.2,
            "baseline": False,
            "change_detection": {"threshold": 3, "action": "flag"},
        },
    ],
)
async def test_lua_update_equals_the_in_process_tracker(redis: Redis, policy: dict[str, Any]) -> None:
    store = RedisStore(redis)
    experiment = await store.experiments.create(spec(policy))
    tracker = tracker_for(experiment)
    rules = observation_rules(experiment)
    steps = 600
    rng = np.random.default_rng(11)
    arms, rewards = observations(rng, steps)
    expires = int(time.time()) + 600

    position = 0
    while position < steps:
        size = int(rng.integers(1, 40))
        batch = range(position, min(position + size, steps))
        records = [
            FeedbackRecord(ARMS[arms[t]], f"n{t}", float(rewards[t]), expires, scaled_reward=float(rewards[t]))
            for t in batch
        ]
        assert await store.counters.record_feedback("mirror", experiment.incarnation, records, rules) == [1] * len(
            records
        )
        for t in batch:
            tracker.observe(int(arms[t]), float(rewards[t]))
        position = batch.stop

        assert_agrees(await store.counters.read("mirror", ARMS, policy_discount(experiment)), tracker)

    # Plain totals are exact whatever the policy does to its own statistics.
    counters = await store.counters.read("mirror", ARMS)
    assert counters.rewards.tolist() == np.bincount(arms, minlength=len(ARMS)).tolist()
    assert counters.reward_sum == pytest.approx(np.bincount(arms, weights=rewards, minlength=len(ARMS)))
    if "change_detection" in policy:
        assert tracker.changes, "the collapse of arm c should have been detected"


async def test_statistics_counted_by_an_older_release_are_kept_on_upgrade(redis: Redis) -> None:
    """Hashes written before the policy statistics existed hold plain totals only (n, s, q)."""
    store = RedisStore(redis)
    experiment = await store.experiments.create(spec({"kind": "thompson"}))
    await redis.hset(
        keys.counters_hash("mirror"), mapping={"n:a": 1000, "s:a": 300, "q:a": 300, "n:b": 1000, "s:b": 700, "q:b": 700}
    )
    before = await store.counters.read("mirror", ARMS)
    assert before.policy_pulls.tolist() == [1000, 1000, 0] and before.policy_sum.tolist() == [300, 700, 0]

    record = FeedbackRecord("a", "first-after-upgrade", 1.0, int(time.time()) + 600, scaled_reward=1.0)
    rules = observation_rules(experiment)
    assert await store.counters.record_feedback("mirror", experiment.incarnation, [record], rules) == [1]
    after = await store.counters.read("mirror", ARMS)
    # Arm a carries its history over plus the new reward; b, not yet rewarded since, keeps its totals.
    assert after.policy_pulls.tolist() == [1001, 1000, 0]
    assert after.policy_sum.tolist() == [301, 700, 0]
    assert after.rewards.tolist() == [1001, 1000, 0]
