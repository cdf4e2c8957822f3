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
            keys.audit_log("shop"),
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


# -- decisions with an issuer and a sequence number: one bit each in a bitmap per block --------


def sequenced(arm: str, sequence: int, issuer: str = "0badc0ffee00", expires_at: int | None = None) -> FeedbackRecord:
    expiry = int(time.time()) + 600 if expires_at is None else expires_at
    return FeedbackRecord(arm=arm, marker="", reward=1.0, expires_at=expiry, issuer=issuer, sequence=sequence)


async def test_a_sequenced_reward_counts_once_in_a_batch_and_across_batches(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    batch = [sequenced("a", 5), sequenced("a", 5), sequenced("b", 6), sequenced("b", 5, issuer="another0000")]
    assert await store.counters.record_feedback("shop", incarnation, batch) == [1, 0, 1, 1]
    assert await store.counters.record_feedback("shop", incarnation, batch) == [0, 0, 0, 0]
    assert await store.counters.record_feedback("shop", incarnation, [sequenced("a", 7)]) == [1]
    assert (await store.counters.read("shop", ["a", "b"])).rewards.tolist() == [2, 2]
    # No key per reward: one bitmap per issuer, with exactly the rewarded bits set.
    assert sorted(k.decode() for k in await redis.keys("mab:{shop}:*")) == sorted(
        [
            keys.config("shop"),
            keys.counters_hash("shop"),
            keys.audit_log("shop"),
            keys.feedback_rewarded("shop", "0badc0ffee00", 0),
            keys.feedback_rewarded("shop", "another0000", 0),
        ]
    )
    bitmap = keys.feedback_rewarded("shop", "0badc0ffee00", 0)
    assert [await redis.getbit(bitmap, offset) for offset in range(9)] == [0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert await redis.bitcount(bitmap) == 3


async def test_a_batch_mixing_old_and_new_ids_counts_each_once(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    batch = [record("a", "legacy-1"), sequenced("a", 0), record("b", "legacy-1"), sequenced("b", 0), record("b", "x")]
    assert await store.counters.record_feedback("shop", incarnation, batch) == [1, 1, 0, 0, 1]
    assert await store.counters.record_feedback("shop", incarnation, batch[::-1]) == [0, 0, 0, 0, 0]
    assert (await store.counters.read("shop", ["a", "b"])).rewards.tolist() == [2, 1]
    assert await redis.get(keys.feedback_seen("shop", "legacy-1")) == b"1"
    assert await redis.getbit(keys.feedback_rewarded("shop", "0badc0ffee00", 0), 0) == 1


async def test_concurrent_sequenced_duplicates_count_once(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    # Two issuers, sequences crossing a block boundary, every batch sent by 8 clients at once.
    records = [sequenced("a" if i % 2 else "b", 65_436 + i, issuer=f"{i % 2:012x}") for i in range(200)]
    results = await asyncio.gather(
        *(store.counters.record_feedback("shop", incarnation, records[::step]) for step in (1, -1) * 4)
    )
    assert sum(sum(codes) for codes in results) == 200
    assert (await store.counters.read("shop", ["a", "b"])).rewards.tolist() == [100, 100]


async def test_sequences_either_side_of_a_block_boundary_use_two_bitmaps(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    issuer = "0badc0ffee00"
    codes = await store.counters.record_feedback(
        "shop", incarnation, [sequenced("a", 65_535), sequenced("a", 65_536), sequenced("a", 0)]
    )
    assert codes == [1, 1, 1]
    first, second = keys.feedback_rewarded("shop", issuer, 0), keys.feedback_rewarded("shop", issuer, 1)
    assert keys.rewarded_position(65_535) == (0, 65_535) and keys.rewarded_position(65_536) == (1, 0)
    assert (await redis.getbit(first, 65_535), await redis.getbit(first, 0)) == (1, 1)
    assert (await redis.getbit(second, 0), await redis.bitcount(second)) == (1, 1)
    # The bound of one bitmap: 2^16 bits, 8 KiB, whatever bit is written.
    assert await redis.strlen(first) == 8192 and await redis.strlen(second) == 1
    # 65536 is not 0 of the first block again, nor 65535 the second's.
    assert await store.counters.record_feedback("shop", incarnation, [sequenced("a", 131_071)]) == [1]
    assert await redis.strlen(second) == 8192
    assert (await store.counters.read("shop", ["a"])).rewards.tolist() == [4]


async def test_a_bitmap_expires_with_the_latest_decision_written_into_it(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    now = int(time.time())
    bitmap = keys.feedback_rewarded("shop", "0badc0ffee00", 0)
    # The first write gives the new key (no TTL yet) the latest expiry of its batch.
    batch = [sequenced("a", seq, expires_at=now + ttl) for seq, ttl in ((1, 300), (2, 500), (3, 400))]
    await store.counters.record_feedback("shop", incarnation, batch)
    assert await redis.expiretime(bitmap) == now + 500
    # An earlier one never shortens it; a later one extends it.
    await store.counters.record_feedback("shop", incarnation, [sequenced("a", 4, expires_at=now + 200)])
    assert await redis.expiretime(bitmap) == now + 500
    await store.counters.record_feedback("shop", incarnation, [sequenced("a", 5, expires_at=now + 900)])
    assert await redis.expiretime(bitmap) == now + 900
    await store.counters.record_feedback("shop", incarnation, [sequenced("a", 5, expires_at=now + 2000)])
    # A duplicate whose window ends later (the experiment's window_s was lengthened since) extends it
    # too, so its bit outlives its new window.
    assert await redis.expiretime(bitmap) == now + 2000
    # A stale or gone batch writes no bit and sets no expiry.
    assert await store.counters.record_feedback("shop", "old", [sequenced("a", 6, issuer="stale0000000")]) == [-1]
    assert await redis.exists(keys.feedback_rewarded("shop", "stale0000000", 0)) == 0


async def test_a_bitmap_goes_as_a_whole_at_its_expiry(redis: Redis) -> None:
    """Past the latest window written into it (ingest refuses those decisions with 410 by then)."""
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    bitmap = keys.feedback_rewarded("shop", "0badc0ffee00", 0)
    await store.counters.record_feedback("shop", incarnation, [sequenced("a", 1, expires_at=int(time.time()) + 1)])
    assert await redis.ttl(bitmap) in (0, 1)
    await asyncio.sleep(2.1)
    assert await redis.exists(bitmap) == 0


async def test_age_slots_of_pending_conversions_are_kept_40_slots_and_no_longer(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    sequence = itertools.count(1)

    async def flush(slot: int, arm: str = "a") -> None:
        fields = {keys.decisions_field(arm): 1, keys.age_slot_field(arm, slot): 1}
        await store.counters.record_decisions("shop", incarnation, fields, {}, DecisionBatch("r1", next(sequence)))

    async def slots(arm: str = "a") -> list[int]:
        counters = await redis.hgetall(keys.counters_hash("shop"))
        prefix = f"ca:{arm}:".encode()
        return sorted(int(field[len(prefix) :]) for field in counters if field.startswith(prefix))

    for slot in range(100, 130):
        await flush(slot)
    assert await slots() == list(range(100, 130))
    await flush(150)  # slots below 110 are past any window: gone
    assert await slots() == [*range(110, 130), 150]
    await flush(1000)  # after a long pause every older slot goes, however far back
    assert await slots() == [1000]
    await flush(1000, arm="b")  # each arm on its own
    assert await slots("b") == [1000] and await slots() == [1000]
    history = await redis.keys("mab:{shop}:series:*")
    for key in history:  # the history buckets hold no age slots
        assert not any(field.startswith(b"ca:") for field in await redis.hkeys(key))
