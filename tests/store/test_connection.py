"""Which Redis failures the store answers as "unavailable" (503 with Retry-After)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bandit.cli.local_redis import start_redis
from bandit.core.errors import StoreUnavailable
from bandit.store.connection import translate_redis_errors
from bandit.store.counters import DecisionBatch


async def test_a_write_on_a_connection_closed_under_it_is_an_outage(redis_url: str) -> None:
    """redis-py 8.1 leaks the transport's AttributeError when the peer closed the connection
    mid-write (redis/redis-py#4287); during a cluster failover that reached a client as a 500."""
    redis = Redis.from_url(redis_url)
    connection = await redis.connection_pool.get_connection()
    try:
        await connection.connect()
        # Another task's disconnect ran while this one waited to write: the frame of the traceback
        # seen in the failover test, `_send_packed_command` writing to a writer that is gone.
        connection._writer = None
        with pytest.raises(StoreUnavailable), translate_redis_errors():
            await connection._send_packed_command(connection.pack_command("PING"))
    finally:
        await connection.disconnect()
        await redis.connection_pool.release(connection)
        await redis.aclose()


async def test_an_attribute_error_of_our_own_is_not_hidden_as_an_outage() -> None:
    with pytest.raises(AttributeError), translate_redis_errors():
        _ = None.missing  # type: ignore[attr-defined]


async def test_a_primary_short_of_replicas_or_memory_is_an_outage() -> None:
    """min-replicas-to-write refuses writes with NOREPLICAS, maxmemory with OOM: 503, retried later.

    On a redis-server of its own: the shared one's settings are not the test's to change.
    """
    process, url = start_redis()
    client = Redis.from_url(url)
    try:
        await client.config_set("min-replicas-to-write", 1)
        with pytest.raises(StoreUnavailable), translate_redis_errors():
            await client.set("mab:test:noreplicas", 1)
        await client.config_set("min-replicas-to-write", 0)
        await client.config_set("maxmemory", 1)
        with pytest.raises(StoreUnavailable), translate_redis_errors():
            await client.set("mab:test:oom", 1)
    finally:
        await client.aclose()
        process.terminate()
        process.wait(timeout=10)


async def test_the_per_primary_clients_log_in_as_the_store_client_does() -> None:
    """The decision flush and durable writes go through clients of their own (KeyConnections):
    they must carry the URL's password (and TLS, timeouts) like the store's client."""
    from bandit.store.counters import DecisionFlush
    from bandit.store.redis_store import RedisStore
    from tests.store.mirror import spec

    process, url = start_redis()
    setup = Redis.from_url(url)
    await setup.config_set("requirepass", "s3cret")
    await setup.aclose()
    store = RedisStore.from_url(url.replace("redis://", "redis://:s3cret@"))
    try:
        experiment = await store.experiments.create(spec({"kind": "thompson"}, "locked"))
        batch = DecisionFlush("locked", experiment.incarnation, {"d:a": 2}, {}, DecisionBatch("r", 1))
        assert await store.counters.record_decisions_many([batch]) == [True]
        assert (await store.counters.read("locked", ["a"])).decisions.tolist() == [2]
    finally:
        await store.close()
        process.terminate()
        process.wait(timeout=10)
