"""record_feedback.lua on whole batches: duplicates anywhere in a batch leave the statistics
exactly as the in-process tracker has them, a batch costs Redis a few calls per arm and per
dedup key rather than a dozen per reward, and durable acknowledgements fence duplicates."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from bandit.cli.local_redis import start_redis
from bandit.core.models import ExperimentSpec
from bandit.core.policy_adapter import observation_rules, policy_discount
from bandit.store import keys
from bandit.store.connection import StoreClient
from bandit.store.counters import FeedbackRecord
from bandit.store.durability import FENCE_TTL_S, NotReplicated
from bandit.store.redis_store import RedisStore
from tests.store import mirror
from tests.store.mirror import ARMS, assert_agrees, observations, tracker_for


def spec(policy: dict[str, Any]) -> ExperimentSpec:
    return mirror.spec(policy, "batch")


def decision(t: int, arm: str, reward: float, expires_at: int) -> FeedbackRecord:
    """Decision t: most have a sequence number (two issuers, blocks on both sides of 2^16), every
    fifth is an id of an earlier release with a seen-marker of its own."""
    if t % 5 == 0:
        return FeedbackRecord(arm, f"legacy-{t}", reward, expires_at, scaled_reward=reward)
    issuer = "0badc0ffee00" if t % 2 else "5eed5eed5eed"
    sequence = (1 << keys.REWARDED_BLOCK_BITS) - 300 + t  # the first ~300 in block 0, the rest in block 1
    return FeedbackRecord(arm, "", reward, expires_at, scaled_reward=reward, issuer=issuer, sequence=sequence)


@pytest.mark.parametrize(
    "policy",
    [
        {"kind": "thompson", "discount": 0.97, "change_detection": {"threshold": 3, "action": "reset_all"}},
        {"kind": "ucb1", "change_detection": {"delta": 0.02, "threshold": 2, "action": "reset_arm"}},
        {"kind": "gradient", "step_size": 0.3, "momentum": 0.5, "change_detection": {"threshold": 3, "action": "flag"}},
    ],
)
async def test_repeats_in_and_across_batches_leave_the_tracker_s_statistics(
    redis: StoreClient, policy: dict[str, Any]
) -> None:
    store = RedisStore(redis)
    experiment = await store.experiments.create(spec(policy))
    tracker = tracker_for(experiment)
    rules = observation_rules(experiment)
    steps = 700
    rng = np.random.default_rng(5)
    arms, rewards = observations(rng, steps)
    expires = int(time.time()) + 600
    records = [decision(t, ARMS[arms[t]], float(rewards[t]), expires) for t in range(steps)]

    counted: set[int] = set()
    position = 0
    while position < steps:
        fresh = list(range(position, min(position + int(rng.integers(1, 60)), steps)))
        # Repeats: of this batch's own items (before and after their first place) and of earlier ones.
        repeats = [int(t) for t in rng.choice(position + len(fresh), size=len(fresh) // 3 + 1)]
        batch = fresh + repeats
        rng.shuffle(batch)
        expected = []
        for t in batch:
            expected.append(0 if t in counted else 1)
            if t not in counted:
                counted.add(t)
                tracker.observe(int(arms[t]), float(rewards[t]))
        codes = await store.counters.record_feedback(
            "batch", experiment.incarnation, [records[t] for t in batch], rules
        )
        assert codes == expected
        position = fresh[-1] + 1

        assert_agrees(await store.counters.read("batch", ARMS, policy_discount(experiment)), tracker)

    assert tracker.changes, "the collapse of arm c should have been detected"
    counters = await store.counters.read("batch", ARMS)
    assert counters.rewards.tolist() == np.bincount(arms, minlength=len(ARMS)).tolist()
    # Summed per arm in the script, then added: as exact as adding one reward at a time, to rounding.
    np.testing.assert_allclose(counters.reward_sum, np.bincount(arms, weights=rewards, minlength=3), rtol=1e-12)
    np.testing.assert_allclose(counters.reward_sq_sum, np.bincount(arms, weights=rewards**2, minlength=3), rtol=1e-12)
    assert int(await redis.hget(keys.counters_hash("batch"), keys.STEP_FIELD)) == steps


async def test_more_marks_than_one_bitfield_call_takes_count_once(redis: StoreClient) -> None:
    store = RedisStore(redis)
    experiment = await store.experiments.create(spec({"kind": "thompson"}))
    expires = int(time.time()) + 600
    records = [
        FeedbackRecord(ARMS[s % 3], "", 1.0, expires, 1.0, "0badc0ffee00", s) for s in [*range(1500), *range(1000)]
    ]
    codes = await store.counters.record_feedback("batch", experiment.incarnation, records)
    assert codes == [1] * 1500 + [0] * 1000
    assert await redis.bitcount(keys.feedback_rewarded("batch", "0badc0ffee00", 0)) == 1500
    assert (await store.counters.read("batch", ARMS)).rewards.tolist() == [500, 500, 500]


async def test_a_reset_or_deleted_experiment_refuses_every_item_of_the_batch(redis: StoreClient) -> None:
    store = RedisStore(redis)
    experiment = await store.experiments.create(spec({"kind": "thompson"}))
    expires = int(time.time()) + 600
    records = [decision(t, "a", 1.0, expires) for t in range(7)]
    assert await store.counters.record_feedback("batch", "another-life", records) == [-1] * 7
    await store.experiments.delete("batch")
    assert await store.counters.record_feedback("batch", experiment.incarnation, records) == [-2] * 7
    # Nothing was marked rewarded, so these decisions were not spent by the refused batches.
    assert await redis.keys("mab:{batch}:rewarded:*") == [] and await redis.keys("mab:{batch}:seen:*") == []


async def test_a_batch_costs_redis_a_few_calls_per_arm_and_per_dedup_key() -> None:
    """Redis calls made by the script for 500 rewards over 3 arms and 2 bitmaps, plus 10 seen-markers:
    the marks (one BITFIELD per bitmap, one SET per marker) and a handful per arm."""
    process, url = start_redis()  # a server of its own: command statistics are per server
    client = Redis.from_url(url)
    try:
        store = RedisStore(client)
        experiment = await store.experiments.create(
            spec({"kind": "thompson", "discount": 0.99, "change_detection": {"threshold": 50}})
        )
        expires = int(time.time()) + 600
        sequenced = [
            FeedbackRecord(ARMS[i % 3], "", 1.0, expires, 1.0, "0badc0ffee00", (1 << 16) - 245 + i) for i in range(490)
        ]
        legacy = [FeedbackRecord(ARMS[i % 3], f"legacy-{i}", 0.0, expires, 0.0) for i in range(10)]
        # Loads the script (NOSCRIPT, then SCRIPT LOAD) before the count starts: a stale incarnation.
        assert await store.counters.record_feedback("batch", "another-life", legacy[:1]) == [-1]
        await client.config_resetstat()
        codes = await store.counters.record_feedback(
            "batch", experiment.incarnation, sequenced + legacy, observation_rules(experiment)
        )
        assert codes == [1] * 500
        stats = await client.info("commandstats")
        calls = Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})
        assert calls["evalsha"] == 1
        assert calls["bitfield"] == 2 and calls["set"] == 10 and calls["setbit"] == 0
        assert calls["hmget"] == 1 + 3  # the incarnation and step, then each arm's state
        inside = sum(calls.values()) - calls["evalsha"] - calls["config|resetstat"] - calls["info"]
        # The marks, the step, at most 7 per arm (its state read, n/s/q added, the discounted and the
        # detector's statistics written, a change counted), EXPIRETIME and EXPIREAT per bitmap.
        assert inside <= 12 + 2 + 3 * 7 + 2 * 2, calls
    finally:
        await client.aclose()
        process.terminate()
        process.wait(timeout=10)


async def test_under_durable_acks_a_batch_with_a_duplicate_writes_the_ack_fence(redis: StoreClient) -> None:
    # One replica asked for, none there: every write answers NotReplicated after it was applied.
    store = RedisStore(redis, ack_replicas=1, ack_timeout_s=0.05)
    experiment = await store.experiments.create(spec({"kind": "thompson"}))
    expires = int(time.time()) + 600
    records = [decision(t, "a", 1.0, expires) for t in range(6)]
    fence = keys.ack_fence("batch")
    with pytest.raises(NotReplicated):
        await store.counters.record_feedback("batch", experiment.incarnation, records)
    assert await redis.exists(fence) == 0  # all new: WAIT on this connection covers them
    with pytest.raises(NotReplicated):
        await store.counters.record_feedback("batch", experiment.incarnation, records[:2])
    assert 0 < await redis.ttl(fence) <= FENCE_TTL_S
    assert (await RedisStore(redis).counters.read("batch", ARMS)).rewards.tolist() == [6, 0, 0]
    assert await RedisStore(redis).counters.record_feedback("batch", experiment.incarnation, records) == [0] * 6
