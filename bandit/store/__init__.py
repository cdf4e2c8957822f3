"""The Redis store: every key and field (`keys`), the Lua scripts beside it (`lua`), and the stores
of experiments, counters, the dashboard's history (with the raw reads stats are computed from,
`stats_reads`) and the decision-id keyring. No code outside this package touches the Redis
client, and Redis errors become StoreUnavailable here."""

from __future__ import annotations

from bandit.store.counters import CounterStore, DecisionBatch, DecisionFlush, FeedbackRecord, parse_counters
from bandit.store.durability import Durability, KeyConnections, NotReplicated
from bandit.store.experiments import ExperimentStore, RoutingRecord
from bandit.store.keyring import KeyringStore
from bandit.store.redis_store import RedisStore
from bandit.store.series import Sample, Series, SeriesLayout, SeriesStore
from bandit.store.stats_reads import StatsInputs

__all__ = [
    "CounterStore",
    "DecisionBatch",
    "DecisionFlush",
    "Durability",
    "ExperimentStore",
    "FeedbackRecord",
    "KeyConnections",
    "KeyringStore",
    "NotReplicated",
    "RedisStore",
    "RoutingRecord",
    "Sample",
    "Series",
    "SeriesLayout",
    "SeriesStore",
    "StatsInputs",
    "parse_counters",
]
