"""The Redis store: every key and field (`keys`), the Lua scripts beside it (`lua`), and the stores
of experiments, counters, the dashboard's history and the decision-id keyring. No code outside
this package touches the Redis client, and Redis errors become StoreUnavailable here."""

from __future__ import annotations

from bandit.store.counters import CounterStore, DecisionBatch, FeedbackRecord, parse_counters
from bandit.store.experiments import ExperimentStore, RoutingRecord
from bandit.store.keyring import KeyringStore
from bandit.store.redis_store import RedisStore
from bandit.store.series import Series, SeriesLayout, SeriesStore

__all__ = [
    "CounterStore",
    "DecisionBatch",
    "ExperimentStore",
    "FeedbackRecord",
    "KeyringStore",
    "RedisStore",
    "RoutingRecord",
    "Series",
    "SeriesLayout",
    "SeriesStore",
    "parse_counters",
]
