"""Feedback ingestion: a Redis outage while looking up an experiment is the request's 503, not an item's;
each reward counted once, by a bit per sequenced decision or a seen-marker per id of an earlier release."""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest
from redis.asyncio import Redis

from bandit.api.ingest import MARKER_GRACE_S, ingest
from bandit.core.decision_ids import DecisionSigner
from bandit.core.errors import ExperimentNotFound, StoreUnavailable
from bandit.core.models import Experiment, ExperimentSpec
from bandit.core.payloads import FeedbackItem, FeedbackResult
from bandit.store import keys
from bandit.store.redis_store import RedisStore

SIGNER = DecisionSigner([b"ingest-test-secret"])


async def test_an_outage_during_the_lookup_fails_the_whole_request(redis: Redis) -> None:
    async def unreachable(name: str) -> Experiment:
        raise StoreUnavailable()

    items = [FeedbackItem(decision=SIGNER.sign("shop", "a", "inc"), reward=1.0)]
    # Raised, so the answer is 503 with Retry-After and the client sends the reward again.
    with pytest.raises(StoreUnavailable):
        await ingest(items, SIGNER, RedisStore(redis).counters, unreachable)


async def test_an_unknown_experiment_is_that_item_s_refusal(redis: Redis) -> None:
    async def missing(name: str) -> Experiment:
        raise ExperimentNotFound(name)

    items = [FeedbackItem(decision=SIGNER.sign("gone", "a", "inc"), reward=1.0)]
    result = await ingest(items, SIGNER, RedisStore(redis).counters, missing)
    assert (result.accepted, result.rejected) == (0, 1)
    assert (result.errors[0].status, result.errors[0].reason) == (404, "experiment 'gone' does not exist")


# -- exactly once, with the dedup structures the ids call for ------------------------------------

SPEC = msgspec.convert(
    {
        "name": "shop",
        "arms": [{"name": "a", "url": "http://127.0.0.1:1"}, {"name": "b", "url": "http://127.0.0.1:2"}],
        "reward": {"window_s": 3600},
    },
    ExperimentSpec,
)


async def _shop(redis: Redis) -> tuple[RedisStore, str]:
    store = RedisStore(redis)
    return store, (await store.experiments.create(SPEC)).incarnation


async def _ingest(store: RedisStore, decisions: list[str], signer: DecisionSigner = SIGNER) -> FeedbackResult:
    items = [FeedbackItem(decision=decision, reward=1.0) for decision in decisions]
    return await ingest(items, signer, store.counters, store.experiments.get)


async def _rewards(store: RedisStore) -> list[float]:
    return (await store.counters.read("shop", ["a", "b"])).rewards.tolist()  # type: ignore[no-any-return]


async def test_new_ids_count_once_in_a_batch_and_across_batches_with_a_bit_each(redis: Redis) -> None:
    store, incarnation = await _shop(redis)
    signer = DecisionSigner([b"ingest-test-secret"])
    ids = [signer.sign("shop", "a" if i % 3 else "b", incarnation) for i in range(30)]
    result = await _ingest(store, ids + ids[:10], signer)
    assert (result.accepted, result.duplicate, result.rejected) == (30, 10, 0)
    result = await _ingest(store, ids[5:], signer)
    assert (result.accepted, result.duplicate) == (0, 25)
    assert await _rewards(store) == [20, 10]
    bitmap = keys.feedback_rewarded("shop", signer.issuer, 0)
    assert await redis.keys("mab:{shop}:seen:*") == []
    assert (await redis.bitcount(bitmap), await redis.strlen(bitmap)) == (30, 4)
    # It lives as long as the last of those decisions could still be rewarded, and no longer.
    latest = max(signer.verify(decision).issued_ms for decision in ids) // 1000
    assert await redis.expiretime(bitmap) == latest + 3600 + MARKER_GRACE_S


async def test_ids_of_earlier_releases_keep_their_seen_markers_and_count_once(redis: Redis) -> None:
    store, incarnation = await _shop(redis)
    legacy = DecisionSigner([b"ingest-test-secret"], sequenced=False)
    old = [legacy.sign("shop", "a", incarnation) for _ in range(3)]
    new = [SIGNER.sign("shop", "b", incarnation) for _ in range(3)]
    mixed = [old[0], new[0], old[0], new[0], old[1], new[1], old[2], new[2]]
    result = await _ingest(store, mixed)
    assert (result.accepted, result.duplicate) == (6, 2)
    result = await _ingest(store, mixed[::-1])
    assert (result.accepted, result.duplicate) == (0, 8)
    assert await _rewards(store) == [3, 3]
    markers = {key.decode() for key in await redis.keys("mab:{shop}:seen:*")}
    expected = {keys.feedback_seen("shop", keys.decision_marker(d.issued_ms, d.nonce)) for d in map(SIGNER.verify, old)}
    assert markers == expected


async def test_a_restarted_worker_s_new_issuer_reuses_no_sequence(redis: Redis) -> None:
    store, incarnation = await _shop(redis)
    before, after = DecisionSigner([b"ingest-test-secret"]), DecisionSigner([b"ingest-test-secret"])
    first, second = before.sign("shop", "a", incarnation), after.sign("shop", "a", incarnation)
    assert (before.verify(first).sequence, after.verify(second).sequence) == (0, 0)
    assert (await _ingest(store, [first, second, first, second])).accepted == 2
    assert await _rewards(store) == [2, 0]


async def test_a_forged_sequence_is_refused_and_counts_nothing(redis: Redis) -> None:
    store, incarnation = await _shop(redis)
    genuine = SIGNER.sign("shop", "a", incarnation)
    pieces = genuine.split(".")
    issuer, _, sequence = pieces[5].partition("-")
    # A client cannot claim another decision's bit by changing the sequence: the signature covers it.
    forged = ".".join([*pieces[:5], f"{issuer}-{int(sequence, 16) + 1:x}", pieces[6]])
    result = await _ingest(store, [forged])
    assert (result.accepted, result.rejected, result.errors[0].status) == (0, 1, 403)
    assert await redis.keys("mab:{shop}:rewarded:*") == []
    assert (await _ingest(store, [genuine])).accepted == 1


async def test_concurrent_clients_sending_each_reward_three_times_count_it_once(redis: Redis) -> None:
    store, incarnation = await _shop(redis)
    signers = [DecisionSigner([b"ingest-test-secret"]) for _ in range(2)]  # two workers
    ids = [signers[i % 2].sign("shop", "a" if i % 4 else "b", incarnation) for i in range(3000)]
    tally = [sum(1 for i in range(3000) if i % 4), sum(1 for i in range(3000) if not i % 4)]
    copies = ids * 3
    random.Random(7).shuffle(copies)
    chunks = [copies[start : start + 250] for start in range(0, len(copies), 250)]
    results = await asyncio.gather(*(_ingest(store, chunk) for chunk in chunks))
    assert sum(result.accepted for result in results) == 3000
    assert sum(result.duplicate for result in results) == 6000
    assert await _rewards(store) == tally
