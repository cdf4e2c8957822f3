"""The decision recorder against a real Redis: a lost reply or an outage never counts twice or loses a count."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
from redis.asyncio import Redis

from bandit.core.errors import StoreUnavailable
from bandit.core.models import ExperimentSpec
from bandit.store import keys
from bandit.store.counters import CounterStore, DecisionBatch, DecisionFlush
from bandit.store.lua import LuaScripts
from bandit.store.redis_store import RedisStore
from proxy.recorder import DecisionRecorder

SPEC = msgspec.convert(
    {"name": "shop", "arms": [{"name": "a", "url": "http://127.0.0.1:1"}, {"name": "b", "url": "http://127.0.0.1:2"}]},
    ExperimentSpec,
)


class RepliesLost(CounterStore):
    """Applies each batch in Redis, then reports Redis unreachable while `losing` is set.

    That is what a connection dropped between Redis's write and its reply looks like to the sender.
    """

    losing = True
    sent: list[DecisionBatch]

    async def record_decisions_many(self, flushes: Sequence[DecisionFlush]) -> list[bool | StoreUnavailable]:
        self.sent.extend(flush.batch for flush in flushes)
        outcomes = await super().record_decisions_many(flushes)
        if self.losing:
            return [StoreUnavailable() for _ in outcomes]
        return outcomes


async def decisions(redis: Redis, arm: str) -> int:
    return int((await redis.hget(keys.counters_hash("shop"), keys.decisions_field(arm))) or 0)


async def test_a_batch_whose_reply_was_lost_is_counted_once(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    counters = RepliesLost(redis, LuaScripts(redis))
    counters.sent = []
    recorder = DecisionRecorder(counters, flush_interval_s=1)

    for _ in range(5):
        recorder.record("shop", incarnation, "a", 3.0, failure=None)
    with pytest.raises(StoreUnavailable):
        await recorder.flush()
    # Counted meanwhile: must neither join the batch already tried nor be lost.
    for _ in range(2):
        recorder.record("shop", incarnation, "a", 3.0, failure=None)
    recorder.record("shop", incarnation, "b", None, failure=None)
    with pytest.raises(StoreUnavailable):
        await recorder.flush()
    assert counters.sent[1] == counters.sent[0], "the tried batch is sent again unchanged"
    counters.losing = False
    await recorder.flush()
    await recorder.flush()  # nothing left: sends nothing

    assert await decisions(redis, "a") == 7 and await decisions(redis, "b") == 1
    assert len(counters.sent) == 4  # the first batch three times, then the one counted meanwhile
    assert counters.sent[2] == counters.sent[0] and counters.sent[3].sequence > counters.sent[0].sequence


async def test_counts_made_while_redis_is_away_wait_in_one_batch(redis: Redis) -> None:
    store = RedisStore(redis)
    incarnation = (await store.experiments.create(SPEC)).incarnation
    unreachable = RedisStore.from_url("redis://127.0.0.1:1/0")
    away = DecisionRecorder(unreachable.counters, flush_interval_s=1)
    try:
        for _ in range(3):
            for _ in range(4):
                away.record("shop", incarnation, "a", None, failure=None)
            with pytest.raises(StoreUnavailable):
                await away.flush()
        # Two batches at most: the one tried, and the one filling behind it.
        assert [sum(b.pending.counter_fields().values()) for b in away._outbox[("shop", incarnation)]] == [4, 8]
    finally:
        await unreachable.close()
    # The same outbox sent once Redis answers (the store swapped back in, as a reconnect would).
    away._counters = store.counters
    await away.flush()
    assert await decisions(redis, "a") == 12
