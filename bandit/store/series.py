"""The dashboard's history: per-experiment counts in fixed-width time buckets kept in Redis.

Every replica adds what it counted to the bucket of the current time (decisions, errors and
latencies from the flusher, rewards from the feedback script), so the history is the same
from every replica and survives restarts. A bucket expires `buckets` widths after it closes:
the history is bounded without any clean-up job. Once per bucket one replica also samples the
posterior (P(best) and the mean of each arm); whichever replica claims the bucket first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis

from bandit.core.latency_buckets import quantile
from bandit.store import keys
from bandit.store.connection import translate_redis_errors


@dataclass(frozen=True, slots=True)
class SeriesLayout:
    """Bucket width and how many buckets are kept."""

    bucket_s: int = 5
    buckets: int = 720

    def bucket_of(self, unix_s: float) -> int:
        return int(unix_s // self.bucket_s)

    def expire_at(self, bucket: int) -> int:
        """Unix time a bucket's key expires: `buckets` widths after the bucket closes."""
        return (bucket + 1 + self.buckets) * self.bucket_s


class ArmSeries(msgspec.Struct, kw_only=True):
    """One arm's values per bucket, aligned with `Series.t` (None where nothing was sampled)."""

    decisions: list[int]
    errors: list[int]
    rewards: list[int]
    reward_sum: list[float]
    latency_p50_ms: list[float | None]
    latency_p99_ms: list[float | None]
    p_best: list[float | None]
    mean: list[float | None]


class Series(msgspec.Struct, kw_only=True):
    """Columns of the history: `t` holds each bucket's start (unix s), oldest first."""

    bucket_s: int
    t: list[float]
    arms: dict[str, ArmSeries]


def _number(raw: bytes | None) -> float:
    if raw is None:
        return 0.0
    value = float(raw)
    return value if math.isfinite(value) else 0.0


def _append_bucket(series: Series, raw: dict[bytes, bytes]) -> None:
    """Append one bucket's values to every arm's columns."""
    latencies: dict[str, dict[int, int]] = {arm: {} for arm in series.arms}
    prefix = keys.SERIES_LATENCY_PREFIX.encode()
    for field, count in raw.items():
        if field.startswith(prefix):
            arm, _, bucket = field[len(prefix) :].decode().rpartition(":")
            if arm in latencies:
                latencies[arm][int(bucket)] = int(count)
    for arm, column in series.arms.items():
        column.decisions.append(int(_number(raw.get(keys.decisions_field(arm).encode()))))
        column.errors.append(int(_number(raw.get(keys.errors_field(arm).encode()))))
        column.rewards.append(int(_number(raw.get(keys.rewards_field(arm).encode()))))
        column.reward_sum.append(_number(raw.get(keys.reward_sum_field(arm).encode())))
        column.latency_p50_ms.append(quantile(latencies[arm], 0.5))
        column.latency_p99_ms.append(quantile(latencies[arm], 0.99))
        column.p_best.append(_optional(raw.get(keys.p_best_field(arm).encode())))
        column.mean.append(_optional(raw.get(keys.mean_field(arm).encode())))


def _optional(raw: bytes | None) -> float | None:
    """A sampled value; absent (nothing sampled) or empty (no observations yet) is None."""
    return _number(raw) if raw else None


def _empty_series(layout: SeriesLayout, arms: list[str]) -> Series:
    return Series(
        bucket_s=layout.bucket_s,
        t=[],
        arms={
            arm: ArmSeries(
                decisions=[],
                errors=[],
                rewards=[],
                reward_sum=[],
                latency_p50_ms=[],
                latency_p99_ms=[],
                p_best=[],
                mean=[],
            )
            for arm in arms
        },
    )


class SeriesStore:
    """Reads and samples the buckets of one Redis."""

    def __init__(self, redis: Redis, layout: SeriesLayout) -> None:
        self._redis = redis
        self.layout = layout

    async def read(
        self, name: str, incarnation: str, arms: list[str], since_unix_s: float | None = None, now: float | None = None
    ) -> Series:
        """The buckets from `since_unix_s` (default: the oldest kept) up to the current one."""
        layout = self.layout
        current = layout.bucket_of(time.time() if now is None else now)
        oldest = current - layout.buckets + 1
        first = oldest if since_unix_s is None else max(oldest, layout.bucket_of(since_unix_s))
        buckets = list(range(first, current + 1))
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for bucket in buckets:
                    pipe.hgetall(keys.series(name, incarnation, bucket))
                replies: list[dict[bytes, bytes]] = await pipe.execute()
        series = _empty_series(layout, arms)
        for bucket, raw in zip(buckets, replies, strict=True):
            if not raw and not series.t:
                continue  # skip the empty stretch before the experiment's first activity
            series.t.append(float(bucket * layout.bucket_s))
            _append_bucket(series, raw)
        return series

    async def claim_samples(self, targets: list[tuple[str, str]], unix_s: float) -> list[bool]:
        """For each (experiment, incarnation): True if this replica is the one to sample its
        current bucket (the first to ask), so the posterior is computed once per bucket."""
        bucket = self.layout.bucket_of(unix_s)
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, incarnation in targets:
                    key = keys.series(name, incarnation, bucket)
                    pipe.hsetnx(key, keys.SAMPLED_FIELD, 1)
                    pipe.expireat(key, self.layout.expire_at(bucket))
                replies = await pipe.execute()
        return [bool(claimed) for claimed in replies[::2]]

    async def write_samples(
        self, name: str, incarnation: str, unix_s: float, p_best: dict[str, float], means: dict[str, float | None]
    ) -> None:
        bucket = self.layout.bucket_of(unix_s)
        fields: dict[str, str] = {keys.p_best_field(arm): repr(value) for arm, value in p_best.items()}
        fields.update({keys.mean_field(arm): "" if value is None else repr(value) for arm, value in means.items()})
        key = keys.series(name, incarnation, bucket)
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping type is too narrow
                pipe.expireat(key, self.layout.expire_at(bucket))
                await pipe.execute()
