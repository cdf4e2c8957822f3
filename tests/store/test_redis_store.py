"""The store against a real Redis: lifecycle, compare-and-set, exactly-once rewards."""

from __future__ import annotations

import asyncio
import itertools
import time

import msgspec
import pytest
from redis.asyncio import Redis

from bandit.core.errors import ExperimentExists, ExperimentNotFound, UnreadableExperiment
from bandit.core.models import ExperimentSpec
from bandit.store import keys
from bandit.store.counters import DecisionBatch, FeedbackRecord
from bandit.store.redis_store import RedisStore

SPEC = msgspec.convert(
    {"name": "shop", "arms": [{"name": "a", "url": "http://127.0.0.1:1"}, {"name": "b", "url": "http://127.0.0.1:2"}]},
    ExperimentSpec,
)


_SEQUENCE = itertools.count(1)


def next_batch() -> DecisionBatch:
    return DecisionBatch("test-replica", next(_SEQUENCE))


def record(arm: str, nonce: str, reward: float = 1.0) -> FeedbackRecord:
    return FeedbackRecord(arm=arm, marker=nonce, reward=reward, expires_at=int(time.time()) + 600)


async def test_create_get_list_delete(redis: Redis) -> None:
    store = RedisStore(redis)
    created = await store.experiments.create(SPEC)
    assert (await store.experiments.get("shop")) == created
    assert [e.name for e in await store.experiments.list_all()] == ["shop"]
    with pytest.raises(ExperimentExists):
        await store.experiments.create(SPEC)
    await store.experiments.delete("shop")
    with pytest.raises(ExperimentNotFound):
        await store.experiments.get("shop")
    assert await store.experiments.list_all() == []


async def test_every_key_of_an_experiment_is_in_its_hash_slot(redis: Redis) -> None:
    store = RedisStore(redis)
    await store.experiments.create(SPEC)
    batch = next_batch()
    await store.counters.record_decisions(
        "shop", (await store.experiments.get("shop")).incarnation, {"d:a": 1}, {"a:3": 1}, batch
    )
    experiment_keys = [k.decode() for k in await redis.keys("mab:{shop}:*")]
    assert sorted(experiment_keys) == sorted(
        [
            keys.config("shop"),
            keys.counters_hash("shop"),
            keys.latency_histogram("shop"),
            keys.flush_sequence("shop", batch.replica),
        ]
    )


async def test_a_decision_batch_sent_again_is_counted_once(redis: Redis) -> None:
    """A resend after a lost reply carries the same sequence; only a newer one adds."""
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    first, second = DecisionBatch("r1", 10), DecisionBatch("r1", 11)
    for batch in (first, first, second, second, first):
        assert await store.counters.record_decisions("shop", incarnation, {"d:a": 3}, {"a:3": 3}, batch) is True
    # Another replica's sequence is its own.
    assert await store.counters.record_decisions("shop", incarnation, {"d:a": 1}, {}, DecisionBatch("r2", 1))
    counters = await redis.hgetall(keys.counters_hash("shop"))
    assert counters[b"d:a"] == b"7"
    assert (await redis.hgetall(keys.latency_histogram("shop")))[b"a:3"] == b"6"
    ttl = await redis.ttl(keys.flush_sequence("shop", "r1"))
    assert 0 < ttl <= 86_400


async def test_concurrent_updates_all_land(redis: Redis) -> None:
    store = RedisStore(redis)
    await store.experiments.create(SPEC)

    def bump(experiment):  # type: ignore[no-untyped-def]
        arms = [msgspec.structs.replace(experiment.arms[0], weight=experiment.arms[0].weight + 1), experiment.arms[1]]
        return msgspec.structs.replace(experiment, arms=arms)

    await asyncio.gather(*(store.experiments.update("shop", bump) for _ in range(5)))
    final = await store.experiments.get("shop")
    assert final.arms[0].weight == 6.0 and final.version == 6


async def test_each_reward_counts_once(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    batch = [record("a", "n1", 1.0), record("a", "n1", 1.0), record("b", "n2", 0.25)]
    assert await store.counters.record_feedback("shop", incarnation, batch) == [1, 0, 1]
    assert await store.counters.record_feedback("shop", incarnation, batch) == [0, 0, 0]
    counters = await store.counters.read("shop", ["a", "b"])
    assert counters.rewards.tolist() == [1, 1]
    assert counters.reward_sum.tolist() == [1.0, 0.25]
    assert counters.reward_sq_sum.tolist() == [1.0, 0.0625]


async def test_concurrent_duplicates_count_once(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    records = [record("a" if i % 2 else "b", f"n{i}") for i in range(200)]
    results = await asyncio.gather(*(store.counters.record_feedback("shop", incarnation, records) for _ in range(8)))
    assert sum(sum(codes) for codes in results) == 200
    assert (await store.counters.read("shop", ["a", "b"])).rewards.tolist() == [100, 100]


async def test_rewards_after_reset_or_delete_are_not_counted(redis: Redis) -> None:
    store = RedisStore(redis)
    old = (await store.experiments.create(SPEC)).incarnation
    new = (await store.experiments.update("shop", lambda e: e, reset_statistics=True)).incarnation
    assert new != old
    assert await store.counters.record_feedback("shop", old, [record("a", "x")]) == [-1]
    assert await store.counters.record_decisions("shop", old, {"d:a": 5}, {}, next_batch()) is False
    assert await store.counters.record_decisions("shop", new, {"d:a": 5}, {}, next_batch()) is True
    await store.experiments.delete("shop")
    assert await store.counters.record_feedback("shop", new, [record("a", "y")]) == [-2]
    assert await redis.exists(keys.counters_hash("shop")) == 0


async def test_seen_markers_expire_with_the_feedback_window(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    expires_at = int(time.time()) + 120
    await store.counters.record_feedback("shop", incarnation, [FeedbackRecord("a", "n", 1.0, expires_at)])
    ttl = await redis.ttl(keys.feedback_seen("shop", "n"))
    assert 100 < ttl <= 120


async def test_an_experiment_stored_under_older_rules_is_named_not_a_crash(redis: Redis) -> None:
    """A record today's rules refuse (here a name with a dot) answers 409 naming it, is left out
    of the listing, and can still be deleted."""
    store = RedisStore(redis)
    good = await store.experiments.create(
        msgspec.convert({"name": "good", "arms": [{"name": "a", "url": "http://127.0.0.1:9/"}]}, ExperimentSpec)
    )
    old = msgspec.to_builtins(good) | {"name": "old.style"}
    await redis.set(keys.config("old.style"), msgspec.json.encode(old))
    await redis.sadd(keys.EXPERIMENTS, "old.style")
    with pytest.raises(UnreadableExperiment, match=r"'old\.style' was stored under rules"):
        await store.experiments.get("old.style")
    assert [experiment.name for experiment in await store.experiments.list_all()] == ["good"]
    await store.experiments.delete("old.style")
    assert await redis.get(keys.config("old.style")) is None
