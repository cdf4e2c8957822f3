"""Stats recomputed only when their inputs change, and the sampler's and overview's idle cost, on a real Redis."""

from __future__ import annotations

import itertools
import time

import msgspec
import pytest
from redis.asyncio import Redis

from bandit.api.ingest import MARKER_GRACE_S
from bandit.api.stats import StatsMemo
from bandit.core.errors import StoreUnavailable
from bandit.core.models import Experiment, ExperimentSpec
from bandit.core.payloads import ExperimentStats
from bandit.dashboard.live import StatsCache
from bandit.dashboard.recent import CLOCK_SKEW_S, RECENT_S, RecentDecisions
from bandit.dashboard.sampler import UNCHANGED_POINT_EVERY_S, SeriesSampler
from bandit.store.counters import DecisionBatch, FeedbackRecord
from bandit.store.redis_store import RedisStore
from bandit.store.series import SeriesLayout, SeriesStore
from proxy.health import ArmHealth

LAYOUT = SeriesLayout(bucket_s=5, buckets=720)
_SEQUENCE = itertools.count(1)
_NONCES = itertools.count(1)


class Routed:
    """The routing port as the sampler sees it: the experiments this process routes."""

    def __init__(self, experiments: list[Experiment]) -> None:
        self.routed = experiments

    def experiments(self) -> list[Experiment]:
        return self.routed


async def _create(store: RedisStore, name: str) -> Experiment:
    spec = msgspec.convert(
        {"name": name, "arms": [{"name": arm, "url": f"http://127.0.0.1:9/{name}/{arm}"} for arm in ("a", "b", "c")]},
        ExperimentSpec,
    )
    return await store.experiments.create(spec)


async def _traffic(store: RedisStore, experiment: Experiment, rewards: dict[str, int]) -> None:
    """Decisions and rewards for each arm, through the real scripts."""
    name, incarnation = experiment.name, experiment.incarnation
    decisions = {f"d:{arm}": 10 * count + 5 for arm, count in rewards.items()}
    await store.counters.record_decisions(
        name, incarnation, decisions, {"a:12": 3}, DecisionBatch("memo-test", next(_SEQUENCE))
    )
    expires = int(time.time()) + 600 + MARKER_GRACE_S
    records = [
        FeedbackRecord(arm=arm, marker=f"n{next(_NONCES)}", reward=1.0, expires_at=expires, scaled_reward=1.0)
        for arm, count in rewards.items()
        for _ in range(count)
    ]
    assert set(await store.counters.record_feedback(name, incarnation, records)) == {1}


def _bucket_start() -> float:
    """Early in the current bucket, so a second later is still the same bucket."""
    return LAYOUT.bucket_of(time.time()) * LAYOUT.bucket_s + 0.5


def _numbers(stats: ExperimentStats) -> object:
    """Everything but the time they were confirmed at."""
    return msgspec.to_builtins(msgspec.structs.replace(stats, generated_at=0.0))


async def test_idle_stats_are_not_recomputed_and_change_with_counters_settings_and_health(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    health = ArmHealth()
    memo = StatsMemo(store.series, health)
    experiment = await _create(store, "memo")
    await _traffic(store, experiment, {"a": 3, "b": 8, "c": 1})

    first = (await memo.current("memo")).stats
    assert memo.computations == 1 and first.totals.rewards == 12
    for _ in range(5):  # idle: read again, not recomputed; Thompson's Monte-Carlo allocation stays as it was
        again = (await memo.current("memo")).stats
        assert _numbers(again) == _numbers(first)
    assert memo.computations == 1
    assert again.generated_at >= first.generated_at  # as of the last read that confirmed them

    await _traffic(store, experiment, {"a": 1})  # new counters
    assert (await memo.current("memo")).stats.totals.rewards == 13
    assert memo.computations == 2

    await store.experiments.update("memo", lambda e: msgspec.structs.replace(e, status="paused"))  # new settings
    assert (await memo.current("memo")).stats.status == "paused"
    assert memo.computations == 3

    for _ in range(3):  # the health the stats show, as this process sees it
        health.observe(("memo", "http://127.0.0.1:9/memo/b"), failed=True, connection_failed=True)
    arms = {arm.name: arm for arm in (await memo.current("memo")).stats.arms}
    assert arms["b"].health == "ejected" and arms["a"].health == "healthy"
    assert memo.computations == 4
    await memo.current("memo")
    assert memo.computations == 4


async def test_many_experiments_in_one_read_and_only_changed_ones_recomputed(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    memo = StatsMemo(store.series, ArmHealth())
    experiments = [await _create(store, f"many-{index}") for index in range(20)]
    for experiment in experiments:
        await _traffic(store, experiment, {"a": 2, "b": 1})
    names = [experiment.name for experiment in experiments]

    computed = await memo.current_many([*names, "never-created"])
    assert list(computed) == names and memo.computations == 20
    await memo.current_many(names)
    assert memo.computations == 20
    await _traffic(store, experiments[7], {"c": 4})
    after = await memo.current_many(names)
    assert memo.computations == 21 and after["many-7"].stats.totals.rewards == 7
    # Within max_age nothing is read at all: the change is seen only once the entry is stale.
    await _traffic(store, experiments[3], {"c": 1})
    assert (await memo.current_many(names, max_age_s=60))["many-3"].stats.totals.rewards == 3
    assert (await memo.current_many(names))["many-3"].stats.totals.rewards == 4

    await store.experiments.delete("many-0")
    assert "many-0" not in await memo.current_many(names)


async def test_sampler_writes_a_point_when_the_posterior_moved_and_reads_only_counters_when_idle(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    memo = StatsMemo(store.series, ArmHealth())
    experiments = [await _create(store, name) for name in ("busy", "idle")]
    for experiment in experiments:
        await _traffic(store, experiment, {"a": 2, "b": 5})
    sampler = SeriesSampler(store.series, StatsCache(memo, store.series, 0.9), Routed(experiments), interval_s=1)
    now = _bucket_start()

    assert await sampler.sample_once(now) == 2  # a new experiment gets its first point at once
    assert memo.computations == 2
    assert await sampler.sample_once(now + 1) == 0  # the same bucket: nothing more to do

    busy = experiments[0]
    await _traffic(store, busy, {"b": 3})
    later = now + LAYOUT.bucket_s
    assert await sampler.sample_once(later) == 1  # only the one that changed
    assert memo.computations == 3
    for bucket in range(2, 6):  # idle buckets: no claim, no computation, no write
        assert await sampler.sample_once(now + bucket * LAYOUT.bucket_s) == 0
    assert memo.computations == 3
    # An idle experiment still gets a point every UNCHANGED_POINT_EVERY_S, without a recomputation.
    assert await sampler.sample_once(now + UNCHANGED_POINT_EVERY_S + LAYOUT.bucket_s) == 2
    assert memo.computations == 3

    series = await store.series.read("busy", busy.incarnation, ["a", "b", "c"], now=later)
    sampled = [p for p in series.arms["b"].p_best if p is not None]
    assert len(sampled) == 2 and sampled[1] != sampled[0]


async def test_a_watcher_updating_the_memo_does_not_hide_a_change_from_the_sampler(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    memo = StatsMemo(store.series, ArmHealth())
    experiment = await _create(store, "watched")
    await _traffic(store, experiment, {"a": 1})
    cache = StatsCache(memo, store.series, 0.9)
    sampler = SeriesSampler(store.series, cache, Routed([experiment]), interval_s=1)
    now = _bucket_start()
    assert await sampler.sample_once(now) == 1
    await _traffic(store, experiment, {"b": 6})
    await cache.get("watched")  # an event stream computes the new stats first
    assert await sampler.sample_once(now + LAYOUT.bucket_s) == 1


async def test_recent_decisions_skip_buckets_that_cannot_hold_any(redis: Redis) -> None:
    store = RedisStore(redis, LAYOUT)
    memo = StatsMemo(store.series, ArmHealth())
    experiment = await _create(store, "recent")
    await _traffic(store, experiment, {"a": 1, "b": 2})  # 15 + 25 decisions in the current bucket
    recent = RecentDecisions(store.series)
    computed = await memo.current("recent")
    now = time.time()
    assert await recent.of([computed], now) == [{"a": 15, "b": 25, "c": 0}]

    # Counters unchanged for over a minute: all zeros without a read (this store's Redis does not
    # even answer), while one that moved within the minute is read.
    unreachable = RecentDecisions(SeriesStore(Redis(port=1, socket_connect_timeout=0.5), LAYOUT))
    computed.counters_since = now - RECENT_S - CLOCK_SKEW_S - LAYOUT.bucket_s
    assert await unreachable.of([computed], now) == [{"a": 0, "b": 0, "c": 0}]
    computed.counters_since = now - 30
    with pytest.raises(StoreUnavailable):
        await unreachable.of([computed], now)
