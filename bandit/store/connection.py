"""The Redis client: how the store connects, and the one place Redis errors become StoreUnavailable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bandit.core.errors import StoreUnavailable

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str) -> Redis:
    """A client for `url`; it connects on first use, so creating one never waits."""
    redis: Redis = Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10)
    return redis


def retry_on_a_fresh_connection(redis: Redis) -> None:
    """Send a command once more, on a new connection, when its pooled connection turns out closed.

    After Redis restarts, every connection in the pool is dead and each would fail its next
    command: a 503 for a feedback or management request made with Redis back up. A client
    made by `Redis.from_url` does not retry at all (its pool gets no Retry), so the store sets
    one. Only ConnectionError, and only once: a command that timed out may have run, and
    running it again could count a batch of decisions twice.
    """
    redis.set_retry(Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


@contextlib.contextmanager
def translate_redis_errors() -> Iterator[None]:
    """Turn 'Redis is unreachable' into StoreUnavailable (503 with Retry-After)."""
    try:
        yield
    except _UNREACHABLE as error:
        raise StoreUnavailable() from error


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; its type hints also allow str)."""
    return value.decode() if isinstance(value, bytes) else value


def as_bytes_hash(reply: dict[Any, Any]) -> dict[bytes, bytes]:
    """An HGETALL reply with its keys and values as bytes."""
    return {
        (k if isinstance(k, bytes) else k.encode()): (v if isinstance(v, bytes) else v.encode())
        for k, v in reply.items()
    }
