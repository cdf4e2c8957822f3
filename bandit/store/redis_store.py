"""One Redis (or one Redis Cluster) and the stores on it: the only code that creates the client and closes it."""

from __future__ import annotations

from bandit.core.settings import Settings
from bandit.store.autopilot_state import AutopilotStore
from bandit.store.connection import StoreClient, connect, retry_on_a_fresh_connection, translate_redis_errors
from bandit.store.counters import CounterStore
from bandit.store.decision_log import DecisionLogStore
from bandit.store.durability import Durability, KeyConnections
from bandit.store.experiments import ExperimentStore
from bandit.store.keyring import KeyringStore
from bandit.store.lua import LuaScripts
from bandit.store.series import SeriesLayout, SeriesStore


class RedisStore:
    """The stores of one Redis, sharing one client (and its connection pool) and one script cache.

    `layout`: the dashboard's history buckets, which the counter scripts also add to; None
    keeps no history (the series store then reads the default layout, empty).
    `ack_replicas` > 0: feedback is acknowledged only once that many replicas hold it, waiting
    at most `ack_timeout_s` (see CounterStore.record_feedback).
    """

    def __init__(
        self,
        redis: StoreClient,
        layout: SeriesLayout | None = None,
        *,
        ack_replicas: int = 0,
        ack_timeout_s: float = 1.0,
    ) -> None:
        self._redis = redis
        retry_on_a_fresh_connection(redis)
        # A WAIT blocks up to the acknowledgement timeout: its reply must not time out first.
        self._connections = KeyConnections(redis, reply_timeout_s=ack_timeout_s + 1.0)
        scripts = LuaScripts(self._redis)
        self.experiments = ExperimentStore(self._redis, scripts)
        self.counters = CounterStore(
            self._redis, scripts, layout, durability=Durability(self._connections, ack_replicas, ack_timeout_s)
        )
        self.series = SeriesStore(self._redis, layout or SeriesLayout(), scripts, self._connections)
        self.keyring = KeyringStore(self._redis)
        self.autopilot = AutopilotStore(self._redis, scripts, self._connections)
        self.decision_log = DecisionLogStore(self._redis)

    @classmethod
    def from_url(cls, url: str, layout: SeriesLayout | None = None, *, cluster: bool = False) -> RedisStore:
        """The stores of the Redis at `url` (with `cluster`, any node of a cluster); it connects on first use."""
        return cls(connect(url, cluster), layout)

    @classmethod
    def from_settings(cls, settings: Settings, layout: SeriesLayout | None = None) -> RedisStore:
        """The stores the service's settings name: URL, cluster mode and durable acknowledgements."""
        return cls(
            connect(settings.redis_url, settings.redis_cluster),
            layout,
            ack_replicas=settings.ack_replicas,
            ack_timeout_s=settings.ack_timeout_s,
        )

    async def ping(self) -> None:
        """Raises StoreUnavailable unless Redis answers."""
        with translate_redis_errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._connections.close()
        await self._redis.aclose()
