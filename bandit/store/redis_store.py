"""One Redis and the stores on it: the only code that creates the Redis client and closes it."""

from __future__ import annotations

from redis.asyncio import Redis

from bandit.store.connection import connect, retry_on_a_fresh_connection, translate_redis_errors
from bandit.store.counters import CounterStore
from bandit.store.experiments import ExperimentStore
from bandit.store.keyring import KeyringStore
from bandit.store.lua import LuaScripts
from bandit.store.series import SeriesLayout, SeriesStore


class RedisStore:
    """The stores of one Redis, sharing one client (and its connection pool) and one script cache.

    `layout`: the dashboard's history buckets, which the counter scripts also add to; None
    keeps no history (the series store then reads the default layout, empty).
    """

    def __init__(self, redis: Redis, layout: SeriesLayout | None = None) -> None:
        self._redis = redis
        retry_on_a_fresh_connection(redis)
        scripts = LuaScripts(self._redis)
        self.experiments = ExperimentStore(self._redis, scripts)
        self.counters = CounterStore(self._redis, scripts, layout)
        self.series = SeriesStore(self._redis, layout or SeriesLayout())
        self.keyring = KeyringStore(self._redis)

    @classmethod
    def from_url(cls, url: str, layout: SeriesLayout | None = None) -> RedisStore:
        """The stores of the Redis at `url`; the client connects on first use."""
        return cls(connect(url), layout)

    async def ping(self) -> None:
        """Raises StoreUnavailable unless Redis answers."""
        with translate_redis_errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
