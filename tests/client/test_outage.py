"""A Redis outage under the client: the service answers 503 with Retry-After, the batchers retry at
that pace, and once Redis is back every reward added meanwhile is counted exactly once."""

from __future__ import annotations

import asyncio
import time

from bandit.client import AsyncClient, Backoff, Client
from tests.client.conftest import FEEDBACK_TOKEN, RestartableRedis, counted, decisions, wait_ready
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

#: Without the service's Retry-After (1 s), this back-off would retry about every 0.05 s.
EAGER = Backoff(initial_s=0.05, max_s=0.05)
OUTAGE_S = 2.5


async def test_rewards_added_during_a_redis_outage_are_retried_and_counted_once(
    own_service: ServiceProcess, own_redis: RestartableRedis, models: ModelServers, name: str
) -> None:
    with Client(own_service.url, token=ADMIN_TOKEN, feedback_token=FEEDBACK_TOKEN) as client:
        client.create_experiment(experiment_body(name, models))
        ids = decisions(client, name, 80)
        before = ids[:10]
        assert client.rewards([(decision, 1) for decision in before]).accepted == 10
        during_sync, during_async = ids[10:45], ids[45:]
        async with AsyncClient(own_service.url, token=ADMIN_TOKEN, feedback_token=FEEDBACK_TOKEN) as aclient:
            sync_batcher = client.batcher(max_items=1000, max_delay_s=0.05, backoff=EAGER, seed=1)
            async_batcher = aclient.batcher(max_items=1000, max_delay_s=0.05, backoff=EAGER, seed=2)

            with own_redis.down():
                outage_started = time.monotonic()
                for index, decision in enumerate(during_sync):
                    sync_batcher.add(decision, index % 2)
                for index, decision in enumerate(during_async):
                    async_batcher.add(decision, index % 2)
                # A reward counted before the outage is sent again too: it must stay counted once.
                sync_batcher.add(before[0], 1)
                await asyncio.sleep(OUTAGE_S - (time.monotonic() - outage_started))
                in_outage = sync_batcher.counters, async_batcher.counters

            for counters in in_outage:
                assert counters.sent == 0 and counters.pending == counters.added, counters
                assert counters.last_retry_reason is not None and counters.last_retry_reason.startswith("503"), counters
                # Retry-After: 1 honoured: about one retry a second, not one every 0.05 s.
                assert 1 <= counters.retries <= OUTAGE_S + 1, counters

            flushed_sync, flushed_async = await asyncio.gather(
                asyncio.to_thread(sync_batcher.flush, 30), async_batcher.flush(timeout_s=30)
            )
            assert flushed_sync and flushed_async
            final_sync = sync_batcher.close()
            final_async = await async_batcher.close()

    assert (final_sync.accepted, final_sync.duplicate, final_sync.failed, final_sync.pending) == (35, 1, 0, 0)
    assert (final_async.accepted, final_async.duplicate, final_async.failed, final_async.pending) == (35, 0, 0, 0)
    wait_ready(own_service)
    with Client(own_service.url, token=ADMIN_TOKEN) as client:
        books = counted(client, name)
        assert books["rewards"] == 80  # 10 before, 70 during: none lost, none twice
        assert books["reward_sum"] == 10 + 17 + 17  # 1 each before; 0, 1, 0, 1... (17 of each 35) during
        # And the decisions served before the outage were counted too (the proxy kept them meanwhile).
        wait_until(lambda: counted(client, name)["decisions"] == 80, 5, "the decisions flushed")
