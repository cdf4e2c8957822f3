"""Feedback batches: each experiment is looked up once per batch, every item keeps the reason it has
always been refused with, in its place, and ids verify by the same HMAC `hmac` computes."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter

import msgspec
import pytest
from redis.asyncio import Redis

from bandit.api.ingest import ingest
from bandit.core.decision_ids import DecisionSigner, _Mac
from bandit.core.errors import ExperimentNotFound
from bandit.core.models import Experiment, ExperimentSpec
from bandit.core.payloads import FeedbackItem
from bandit.store.redis_store import RedisStore

SIGNER = DecisionSigner([b"batch-test-secret"])


def _spec(name: str, **reward: object) -> ExperimentSpec:
    arms = [{"name": "a", "url": "http://127.0.0.1:1"}, {"name": "b", "url": "http://127.0.0.1:2"}]
    return msgspec.convert({"name": name, "arms": arms, "reward": {"window_s": 3600, **reward}}, ExperimentSpec)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 63, 64, 65, 100, 200])
def test_the_signature_is_the_hmac_sha256_of_hmac(length: int) -> None:
    secret = bytes(7 * i % 256 for i in range(length))
    for message in (b"", b"x", b"shop.a.inc.lq3kz9a.0.0badc0ffee00-1a" * 5):
        assert _Mac(secret).digest(message) == hmac.new(secret, message, hashlib.sha256).digest()


async def test_each_experiment_is_looked_up_once_per_batch_and_every_item_keeps_its_reason(redis: Redis) -> None:
    store = RedisStore(redis)
    shop = await store.experiments.create(_spec("shop", bounds=[0, 1]))
    lookups: Counter[str] = Counter()

    async def find(name: str) -> Experiment:
        lookups[name] += 1
        if name == "gone":
            raise ExperimentNotFound(name)
        return await store.experiments.get(name)

    old_ms = int(time.time() * 1000) - 7200 * 1000
    decisions = [
        SIGNER.sign("shop", "a", shop.incarnation),  # 0 counted
        SIGNER.sign("gone", "a", "inc"),  # 1 experiment gone
        SIGNER.sign("shop", "z", shop.incarnation),  # 2 no such arm
        "shop.a.inc.not-an-id",  # 3 forged
        SIGNER.sign("shop", "b", shop.incarnation, issued_ms=old_ms),  # 4 past the window
        SIGNER.sign("shop", "b", shop.incarnation),  # 5 reward out of bounds
        SIGNER.sign("gone", "b", "inc"),  # 6 experiment gone
        SIGNER.sign("shop", "b", "an-earlier-life"),  # 7 reset since
    ]
    rewards = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0, 1.0]
    items = [FeedbackItem(decision=d, reward=r) for d, r in zip(decisions, rewards, strict=True)]
    items.append(items[0])  # 8 duplicate
    result = await ingest(items, SIGNER, store.counters, find)

    assert lookups == {"shop": 1, "gone": 1}
    assert (result.accepted, result.duplicate, result.rejected) == (1, 1, 7)
    assert [(error.index, error.status) for error in result.errors] == [
        (1, 404),
        (2, 404),
        (3, 403),
        (4, 410),
        (5, 422),
        (6, 404),
        (7, 410),
    ]
    reasons = {error.index: error.reason for error in result.errors}
    assert reasons[1] == reasons[6] == "experiment 'gone' does not exist"
    assert reasons[2] == "arm 'z' is no longer part of experiment 'shop'"
    assert reasons[3] == "decision is not a valid decision id"
    assert reasons[4].startswith("decision is 7200 s old, past the experiment's feedback window of 3600 s")
    assert reasons[5] == "reward 3.0 is outside the experiment's reward bounds [0.0, 1.0]"
    assert reasons[7] == "the experiment was reset after this decision"


async def test_experiments_in_one_batch_are_counted_apart(redis: Redis) -> None:
    store = RedisStore(redis)
    shop = await store.experiments.create(_spec("shop"))
    news = await store.experiments.create(_spec("news", latency_penalty=0.5, bounds=None))
    counted: list[str] = []
    items = [
        FeedbackItem(decision=SIGNER.sign("shop", "a", shop.incarnation), reward=1.0),
        FeedbackItem(decision=SIGNER.sign("news", "b", news.incarnation, latency_us=2_000_000), reward=2.0),
        FeedbackItem(decision=SIGNER.sign("shop", "b", shop.incarnation), reward=0.5),
    ]
    result = await ingest(items, SIGNER, store.counters, store.experiments.get, counted.append)
    assert (result.accepted, result.rejected) == (3, 0)
    assert sorted(counted) == ["news", "shop"]
    assert (await store.counters.read("shop", ["a", "b"])).reward_sum.tolist() == [1.0, 0.5]
    # The latency penalty: 2.0 - 0.5 x 2 s.
    assert (await store.counters.read("news", ["a", "b"])).reward_sum.tolist() == [0.0, 1.0]
