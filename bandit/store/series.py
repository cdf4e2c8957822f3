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
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from bandit.core.errors import StoreUnavailable
from bandit.core.guardrails import WindowCounts
from bandit.core.latency_buckets import quantile
from bandit.store import keys
from bandit.store.connection import StoreClient, as_bytes_hash, translate_redis_errors
from bandit.store.durability import KeyConnections
from bandit.store.lua import LuaScripts
from bandit.store.stats_reads import StatsInputs, read_counters, read_stats_inputs

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline


@dataclass(frozen=True, slots=True)
class Sample:
    """The posterior of one experiment to write into its current bucket."""

    name: str
    incarnation: str
    p_best: dict[str, float]
    means: dict[str, float | None]


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

    def __init__(
        self,
        redis: StoreClient,
        layout: SeriesLayout,
        scripts: LuaScripts | None = None,
        connections: KeyConnections | None = None,
    ) -> None:
        self._redis = redis
        self.layout = layout
        self._scripts = scripts or LuaScripts(redis)
        # A pipeline per primary (redis-py's cluster pipelines refuse scripts).
        self._connections = connections or KeyConnections(redis)

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

    async def recent(
        self, targets: Sequence[tuple[str, str]], since_unix_s: float, now: float
    ) -> list[list[tuple[float, dict[bytes, bytes]]]]:
        """For each (experiment, incarnation): (bucket start, raw bucket) of the buckets from the one
        holding `since_unix_s` to the current one, in one round trip (the guardrails' window)."""
        if not targets:
            return []
        layout = self.layout
        buckets = list(range(layout.bucket_of(since_unix_s), layout.bucket_of(now) + 1))
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, incarnation in targets:
                    for bucket in buckets:
                        pipe.hgetall(keys.series(name, incarnation, bucket))
                replies = await pipe.execute()
        width = len(buckets)
        return [
            [
                (float(bucket * layout.bucket_s), as_bytes_hash(replies[index * width + offset]))
                for offset, bucket in enumerate(buckets)
            ]
            for index in range(len(targets))
        ]

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
        await self.write_many_samples([Sample(name, incarnation, p_best, means)], unix_s)

    async def write_many_samples(self, samples: Sequence[Sample], unix_s: float) -> None:
        """Write each sample into its experiment's current bucket, all in one pipelined round trip."""
        if not samples:
            return
        bucket = self.layout.bucket_of(unix_s)
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for sample in samples:
                    fields = {keys.p_best_field(arm): repr(value) for arm, value in sample.p_best.items()}
                    fields |= {keys.mean_field(arm): "" if v is None else repr(v) for arm, v in sample.means.items()}
                    key = keys.series(sample.name, sample.incarnation, bucket)
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping type is too narrow
                    # The claim set the expiry already; again in case the key was gone meanwhile, so no
                    # bucket is ever left without one.
                    pipe.expireat(key, self.layout.expire_at(bucket))
                await pipe.execute()

    async def decisions_in(
        self, reads: Sequence[tuple[str, str, Sequence[str], Sequence[int]]]
    ) -> list[list[dict[str, int]]]:
        """For each (experiment, incarnation, arms, buckets): the decisions per arm in each of those
        buckets. Only the decision fields are read, one script call per experiment (read_decisions.lua),
        every experiment in one round trip."""
        if not reads:
            return []
        script = self._scripts.read_decisions

        def queue(pipe: Pipeline, index: int) -> Awaitable[Any]:
            name, incarnation, arms, buckets = reads[index]
            bucket_keys = [keys.series(name, incarnation, bucket) for bucket in buckets]
            return script(keys=bucket_keys, args=[keys.decisions_field(arm) for arm in arms], client=pipe)

        replies: list[Any] = []
        for reply in await self._connections.pipelined([keys.counters_hash(name) for name, *_ in reads], queue):
            if isinstance(reply, StoreUnavailable):
                raise reply
            replies.append(reply)
        return [
            [{arm: int(_number(raw)) for arm, raw in zip(arms, bucket_reply, strict=True)} for bucket_reply in reply]
            for (_, _, arms, _), reply in zip(reads, replies, strict=True)
        ]

    async def read_stats_inputs(self, names: Sequence[str], config: bool = True) -> list[StatsInputs]:
        """What the stats of each experiment are computed from, raw, in one round trip
        (:mod:`bandit.store.stats_reads`; here because this store holds the client the
        dashboard reads with)."""
        return await read_stats_inputs(self._redis, names, config)

    async def read_counters(self, names: Sequence[str]) -> list[dict[bytes, bytes]]:
        """Each experiment's counters hash, raw, in one round trip (to tell which changed)."""
        return await read_counters(self._redis, names)


def arm_window(
    buckets: Sequence[tuple[float, dict[bytes, bytes]]], arm: str, since_unix_s: float, bucket_s: float
) -> WindowCounts:
    """One arm's requests, errors and latencies over the buckets that end after `since_unix_s`."""
    decisions_field, errors_field = keys.decisions_field(arm).encode(), keys.errors_field(arm).encode()
    prefix = f"{keys.SERIES_LATENCY_PREFIX}{arm}:".encode()
    decisions = errors = 0
    latencies: dict[int, int] = {}
    for start, raw in buckets:
        if start + bucket_s <= since_unix_s:
            continue
        decisions += int(_number(raw.get(decisions_field)))
        errors += int(_number(raw.get(errors_field)))
        for field, count in raw.items():
            if field.startswith(prefix):
                bucket = int(field[len(prefix) :])
                latencies[bucket] = latencies.get(bucket, 0) + int(count)
    return WindowCounts(requests=decisions + errors, errors=errors, latencies=latencies)
