"""The dashboard's history in Redis: what each writer adds, how it is read, and its bounds."""

from __future__ import annotations

import itertools
import time

import msgspec
import pytest
from redis.asyncio import Redis

from bandit.api.ingest import MARKER_GRACE_S
from bandit.core.models import ExperimentSpec
from bandit.store import keys
from bandit.store.counters import DecisionBatch, FeedbackRecord
from bandit.store.redis_store import RedisStore
from bandit.store.series import SeriesLayout, SeriesStore

LAYOUT = SeriesLayout(bucket_s=10, buckets=6)


_SEQUENCE = itertools.count(1)


def next_batch() -> DecisionBatch:
    return DecisionBatch("test-replica", next(_SEQUENCE))


async def _experiment(store: RedisStore, name: str = "series") -> str:
    spec = msgspec.convert(
        {
            "name": name,
            "arms": [{"name": "a", "url": "http://127.0.0.1:9/"}, {"name": "b", "url": "http://127.0.0.1:9/"}],
        },
        ExperimentSpec,
    )
    return (await store.experiments.create(spec)).incarnation


def _reward(arm: str, nonce: str, reward: float) -> FeedbackRecord:
    return FeedbackRecord(
        arm=arm, marker=nonce, reward=reward, expires_at=int(time.time()) + 600 + MARKER_GRACE_S, scaled_reward=reward
    )


async def test_decisions_and_rewards_land_in_the_current_bucket_once(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    incarnation = await _experiment(store)
    latency_a = keys.latency_field("a", 12)
    await store.counters.record_decisions(
        "series", incarnation, {"d:a": 5, "d:b": 2, "e:b": 1}, {latency_a: 5}, next_batch()
    )
    codes = await store.counters.record_feedback(
        "series", incarnation, [_reward("a", "n1", 1.0), _reward("a", "n2", 0.0), _reward("b", "n3", 1.0)]
    )
    assert codes == [1, 1, 1]
    # The same rewards again are duplicates: the history counts them once, as the totals do.
    assert await store.counters.record_feedback("series", incarnation, [_reward("a", "n1", 1.0)]) == [0]

    series = await SeriesStore(redis, LAYOUT).read("series", incarnation, ["a", "b"])
    assert len(series.t) == 1 and series.t[0] == LAYOUT.bucket_of(time.time()) * LAYOUT.bucket_s
    a, b = series.arms["a"], series.arms["b"]
    assert (a.decisions, a.errors, a.rewards, a.reward_sum) == ([5], [0], [2], [1.0])
    assert (b.decisions, b.errors, b.rewards, b.reward_sum) == ([2], [1], [1], [1.0])
    assert a.latency_p50_ms[0] is not None and b.latency_p50_ms == [None]
    assert a.p_best == [None]  # nothing sampled yet


async def test_buckets_expire_so_the_history_is_bounded(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    incarnation = await _experiment(store)
    await store.counters.record_decisions("series", incarnation, {"d:a": 1}, {}, next_batch())
    bucket = LAYOUT.bucket_of(time.time())
    ttl = await redis.ttl(keys.series("series", incarnation, bucket))
    # Kept `buckets` widths after the bucket closes, and no longer.
    assert 0 < ttl <= (LAYOUT.buckets + 1) * LAYOUT.bucket_s
    # Reads never reach past the kept window, however old the history asked for.
    series = await SeriesStore(redis, LAYOUT).read("series", incarnation, ["a"], since_unix_s=0.0)
    assert len(series.t) <= LAYOUT.buckets


async def test_read_aligns_every_arm_with_the_bucket_times(redis: Redis) -> None:
    incarnation = await _experiment(RedisStore(redis, LAYOUT))
    now = time.time()
    current = LAYOUT.bucket_of(now)
    # Activity three and one bucket ago, none in between or now.
    await redis.hset(keys.series("series", incarnation, current - 3), mapping={"d:a": 4})
    await redis.hset(keys.series("series", incarnation, current - 1), mapping={"d:b": 7, "p:a": "0.25"})
    series = await SeriesStore(redis, LAYOUT).read("series", incarnation, ["a", "b"], now=now)
    assert series.t == [float(b * LAYOUT.bucket_s) for b in range(current - 3, current + 1)]
    assert series.arms["a"].decisions == [4, 0, 0, 0]
    assert series.arms["b"].decisions == [0, 0, 7, 0]
    assert series.arms["a"].p_best == [None, None, 0.25, None]
    # From a point in time: the bucket holding it onwards.
    since = await SeriesStore(redis, LAYOUT).read("series", incarnation, ["a", "b"], since_unix_s=series.t[2], now=now)
    assert since.t == series.t[2:]


async def test_a_reset_starts_a_new_history_and_old_writers_cannot_touch_it(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    old = await _experiment(store)
    await store.counters.record_decisions("series", old, {"d:a": 3}, {}, next_batch())
    new = (await store.experiments.update("series", lambda e: e, reset_statistics=True)).incarnation
    # A replica that still thinks the old incarnation is current: its counts are dropped.
    assert await store.counters.record_decisions("series", old, {"d:a": 9}, {}, next_batch()) is False
    reader = SeriesStore(redis, LAYOUT)
    assert (await reader.read("series", new, ["a"])).t == []
    assert (await reader.read("series", old, ["a"])).arms["a"].decisions == [3]


async def test_one_replica_claims_each_bucket_for_sampling(redis: Redis) -> None:
    reader = SeriesStore(redis, LAYOUT)
    now = time.time()
    targets = [("x", "i1"), ("y", "i2")]
    assert await reader.claim_samples(targets, now) == [True, True]
    assert await reader.claim_samples(targets, now) == [False, False]
    # The next bucket is claimable again.
    assert await reader.claim_samples(targets, now + LAYOUT.bucket_s) == [True, True]
    await reader.write_samples("x", "i1", now, {"a": 0.75}, {"a": 0.5, "b": None})
    series = await reader.read("x", "i1", ["a", "b"], now=now)
    assert series.arms["a"].p_best[-1] == pytest.approx(0.75)
    assert series.arms["a"].mean[-1] == pytest.approx(0.5)
    assert series.arms["b"].mean[-1] is None
