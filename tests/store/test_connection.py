"""Which Redis failures the store answers as "unavailable" (503 with Retry-After)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bandit.core.errors import StoreUnavailable
from bandit.store.connection import translate_redis_errors


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
