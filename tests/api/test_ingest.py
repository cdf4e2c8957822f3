"""Feedback ingestion: a Redis outage while looking up an experiment is the request's 503, not an item's."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bandit.api.ingest import ingest
from bandit.core.decision_ids import DecisionSigner
from bandit.core.errors import ExperimentNotFound, StoreUnavailable
from bandit.core.models import Experiment
from bandit.core.payloads import FeedbackItem
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
