"""What an experiment's stats are computed from, read raw for many experiments in one round trip.

The stats (allocation, credible intervals, P(best)) cost milliseconds per experiment; their
readers keep them until these raw inputs change, so an idle experiment costs a comparison of
bytes, not a recomputation. Per-key commands in a non-transactional pipeline: no command spans
two experiments, so this works unchanged on a Redis Cluster (each key carries its `{name}` tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bandit.store import keys
from bandit.store.connection import StoreClient, as_bytes_hash, translate_redis_errors


@dataclass(frozen=True, slots=True)
class StatsInputs:
    """One experiment's stored config (None: deleted, or not read), counters hash and latency hash, undecoded."""

    name: str
    config: bytes | None
    counters: dict[bytes, bytes]
    latencies: dict[bytes, bytes]
    # The acting replica's last guardrail verdict (JSON), for experiments with guardrails.
    verdict: bytes | None = None


async def read_counters(redis: StoreClient, names: Sequence[str]) -> list[dict[bytes, bytes]]:
    """HGETALL of each experiment's counters hash, pipelined: one command each, to see which moved."""
    if not names:
        return []
    with translate_redis_errors():
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.counters_hash(name))
            replies = await pipe.execute()
    return [as_bytes_hash(reply) for reply in replies]


def parse_latency_histograms(raw: dict[bytes, bytes]) -> dict[str, dict[int, int]]:
    """A latency hash as {arm: {bucket: count}} (fields are "<arm>:<bucket>", keys.latency_field)."""
    histograms: dict[str, dict[int, int]] = {}
    for field, count in raw.items():
        arm, _, bucket = field.decode().rpartition(":")
        histograms.setdefault(arm, {})[int(bucket)] = int(count)
    return histograms


async def read_stats_inputs(redis: StoreClient, names: Sequence[str], config: bool = True) -> list[StatsInputs]:
    """HGETALL counters, HGETALL latency, GET verdict and (with `config`) GET config of each
    experiment, pipelined.

    Without `config` (the caller knows the experiment's settings already, e.g. from the proxy's
    snapshot) each experiment costs three commands instead of four. Raises StoreUnavailable.
    """
    if not names:
        return []
    with translate_redis_errors():
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.counters_hash(name))
                pipe.hgetall(keys.latency_histogram(name))
                pipe.get(keys.autopilot_verdict(name))
                if config:
                    pipe.get(keys.config(name))
            replies = await pipe.execute()
    width = 4 if config else 3
    return [
        StatsInputs(
            name,
            replies[width * index + 3] if config else None,
            as_bytes_hash(replies[width * index]),
            as_bytes_hash(replies[width * index + 1]),
            replies[width * index + 2],
        )
        for index, name in enumerate(names)
    ]
