"""The experiment store on Redis: configs, counters and exactly-once rewards.

Every read-modify-write runs in a Lua script (:mod:`bandit.scripts`); Redis errors
become :class:`StoreUnavailable` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bandit import keys
from bandit.exceptions import (
    ConcurrentUpdate,
    ExperimentExists,
    ExperimentNotFound,
    NothingToRollBack,
    StoreUnavailable,
    TooManyExperiments,
    UnreadableExperiment,
)
from bandit.learning import ObservationRules
from bandit.models import Experiment, ExperimentSpec
from bandit.scripts import Scripts
from bandit.series_layout import SeriesLayout

log = logging.getLogger("mab.store")
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_encode = msgspec.json.Encoder().encode
_decode_experiment = msgspec.json.Decoder(Experiment).decode
_MAX_UPDATE_ATTEMPTS = 8
PUBSUB_CLOSE_TIMEOUT_S = 2.0
#: Earlier settings kept per experiment for rollback.
CONFIG_HISTORY_KEPT = 20


def _stored_experiment(name: str, raw: bytes | str) -> Experiment:
    """Decode a stored experiment; one stored under older, looser rules is named, not a 500."""
    try:
        return _decode_experiment(raw)
    except msgspec.ValidationError as error:
        raise UnreadableExperiment(
            detail=f"experiment {name!r} was stored under rules it no longer meets ({error}); "
            "delete it and create it again"
        ) from None


def _settings_of(experiment: Experiment) -> Any:
    """What an operator changes: everything but the bookkeeping fields an update always moves."""
    settings = msgspec.to_builtins(experiment)
    for field in ("version", "updated_at", "incarnation"):
        settings.pop(field, None)
    return settings


@contextlib.contextmanager
def translate_redis_errors() -> Any:
    """Turn 'Redis is unreachable' into StoreUnavailable (503 with Retry-After)."""
    try:
        yield
    except _UNREACHABLE as error:
        raise StoreUnavailable() from error


@dataclass(frozen=True, slots=True)
class ArmCounters:
    """Raw per-arm counters from Redis, in the order of the arms asked for; shapes (K,)."""

    incarnation: str | None
    decisions: np.ndarray
    rewards: np.ndarray
    reward_sum: np.ndarray
    reward_sq_sum: np.ndarray
    errors: np.ndarray
    mirror_dropped: np.ndarray
    # What the policy reads: discounted (and reset on detected changes) rewards, sums, squares.
    policy_pulls: np.ndarray
    policy_sum: np.ndarray
    policy_sq_sum: np.ndarray
    preferences: np.ndarray
    changes: np.ndarray
    # Unix time of each arm's last detected change, 0 for none.
    last_change_at: np.ndarray


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One verified reward ready to be counted."""

    arm: str
    nonce: str
    reward: float
    # Unix seconds after which the decision can no longer be rewarded.
    expires_at: int
    # The reward on the policy's scale ([0, 1] when bounded), for change detection and preferences.
    scaled_reward: float = 0.0


def parse_counters(raw: dict[bytes, bytes], arms: Sequence[str], discount: float = 1.0) -> ArmCounters:
    """Counters of `arms` from the HGETALL of a stats hash, discounted statistics brought up to date."""

    def column(field: Callable[[str], str]) -> np.ndarray:
        return np.array([float(raw.get(field(arm).encode(), 0)) for arm in arms], dtype=np.float64)

    incarnation = raw.get(keys.INCARNATION_FIELD.encode())
    rewards, reward_sum, reward_sq_sum = (
        column(keys.rewards_field),
        column(keys.reward_sum_field),
        column(keys.reward_sq_field),
    )
    step = float(raw.get(keys.STEP_FIELD.encode(), 0))
    # Stored as of each arm's last step; every later observation discounts them once more.
    decay = discount ** (step - column(keys.policy_step_field))
    # An arm last counted by a release without policy statistics (no step field of its own)
    # has plain totals only, which are its statistics until its next reward converts them.
    converted = np.array([keys.policy_step_field(arm).encode() in raw for arm in arms], dtype=bool)
    policy = (
        np.where(converted, column(keys.policy_pulls_field) * decay, rewards),
        np.where(converted, column(keys.policy_sum_field) * decay, reward_sum),
        np.where(converted, column(keys.policy_sq_field) * decay, reward_sq_sum),
    )
    return ArmCounters(
        incarnation=incarnation.decode() if incarnation is not None else None,
        decisions=column(keys.decisions_field),
        rewards=rewards,
        reward_sum=reward_sum,
        reward_sq_sum=reward_sq_sum,
        errors=column(keys.errors_field),
        mirror_dropped=column(keys.mirror_dropped_field),
        policy_pulls=policy[0],
        policy_sum=policy[1],
        policy_sq_sum=policy[2],
        preferences=column(keys.preference_field),
        changes=column(keys.changes_field),
        last_change_at=column(keys.last_change_field),
    )


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; its type hints also allow str)."""
    return value.decode() if isinstance(value, bytes) else value


def as_bytes_hash(reply: dict[Any, Any]) -> dict[bytes, bytes]:
    """An HGETALL reply with its keys and values as bytes."""
    return {
        (k if isinstance(k, bytes) else k.encode()): (v if isinstance(v, bytes) else v.encode())
        for k, v in reply.items()
    }


def retry_on_a_fresh_connection(redis: Redis) -> None:
    """Send a command once more, on a new connection, when its pooled connection turns out closed.

    After Redis restarts, every connection in the pool is dead and each would fail its next
    command: a 503 for a feedback or management request made with Redis back up. A client
    made by `Redis.from_url` does not retry at all (its pool gets no Retry), so the store sets
    one. Only ConnectionError, and only once: a command that timed out may have run, and
    running it again could count a batch of decisions twice.
    """
    redis.set_retry(Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


def new_incarnation() -> str:
    return secrets.token_hex(4)


class ExperimentStore:
    """Reads and writes experiments in Redis."""

    def __init__(self, redis: Redis, series: SeriesLayout | None = None) -> None:
        self.redis = redis
        retry_on_a_fresh_connection(redis)
        self.scripts = Scripts(redis)
        # The dashboard's time buckets that decisions and rewards are also added to (None: not kept).
        self.series = series

    # -- experiments -------------------------------------------------------------
    async def create(self, spec: ExperimentSpec, max_experiments: int | None = None) -> Experiment:
        """Store a new experiment; ExperimentExists if the name is taken, TooManyExperiments past the limit."""
        now = time.time()
        experiment = Experiment(
            **msgspec.structs.asdict(spec), incarnation=new_incarnation(), created_at=now, updated_at=now
        )
        with translate_redis_errors():
            # The index lives in another cluster slot than the experiment's keys, so it is written
            # first, on its own; `list_all` ignores names whose config is missing. Should Redis fail
            # in between, the name stays reserved, and the client's retry of the create reuses it.
            await self._reserve(spec.name, max_experiments)
            created = await self.scripts.create_experiment(
                keys=[keys.config(spec.name), keys.stats(spec.name), keys.latency(spec.name)],
                args=[_encode(experiment), experiment.incarnation],
            )
            if not created:
                raise ExperimentExists(spec.name)
            await self.redis.publish(keys.CHANGES_CHANNEL, spec.name)
        return experiment

    async def _reserve(self, name: str, limit: int | None) -> None:
        """Add `name` to the index, refusing a new name that would take the index past `limit`.

        SADD and SCARD run in one transaction, so each creation counts every creation before it:
        of racing creations only those that found room keep their name, and the limit holds.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(keys.EXPERIMENTS, name)
            pipe.scard(keys.EXPERIMENTS)
            added, count = await pipe.execute()
        if added and limit is not None and count > limit:
            await self.redis.srem(keys.EXPERIMENTS, name)
            raise TooManyExperiments(limit)

    async def get(self, name: str) -> Experiment:
        with translate_redis_errors():
            raw = await self.redis.get(keys.config(name))
        if raw is None:
            raise ExperimentNotFound(name)
        return _stored_experiment(name, raw)

    async def list_all(self) -> list[Experiment]:
        with translate_redis_errors():
            names = sorted(as_text(n) for n in await self.redis.smembers(keys.EXPERIMENTS))
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(keys.config(name))
                configs = await pipe.execute()
        experiments = []
        for name, raw in zip(names, configs, strict=True):
            if raw is None:
                continue
            try:
                experiments.append(_stored_experiment(name, raw))
            except UnreadableExperiment as error:
                log.warning("%s", error.detail)  # listed experiments stay readable; this one can be deleted
        return experiments

    async def update(
        self, name: str, change: Callable[[Experiment], Experiment], *, reset_statistics: bool = False
    ) -> Experiment:
        """Apply `change` to the stored experiment with compare-and-set, retrying on a race."""
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            current = await self.get(name)
            changed = change(current)
            incarnation = new_incarnation() if reset_statistics else current.incarnation
            updated = msgspec.structs.replace(
                changed, version=current.version + 1, updated_at=time.time(), incarnation=incarnation
            )
            history = "push" if _settings_of(changed) != _settings_of(current) else "keep"
            with translate_redis_errors():
                outcome = await self.scripts.update_experiment(
                    keys=[keys.config(name), keys.stats(name), keys.latency(name), keys.config_history(name)],
                    args=[
                        str(current.version),
                        _encode(updated),
                        incarnation if reset_statistics else "",
                        history,
                        CONFIG_HISTORY_KEPT,
                    ],
                )
                if outcome == -1:
                    raise ExperimentNotFound(name)
                if outcome == 1:
                    await self.redis.publish(keys.CHANGES_CHANNEL, name)
                    return updated
        raise ConcurrentUpdate(detail=f"experiment {name!r} kept changing during the update; retry")

    async def rollback(self, name: str) -> Experiment:
        """Restore the settings in place before the last change (statistics are kept).

        Each rollback goes one change further back, up to CONFIG_HISTORY_KEPT changes.
        """
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            current = await self.get(name)
            with translate_redis_errors():
                raw_previous = await self.redis.lindex(keys.config_history(name), 0)
            if raw_previous is None:
                raise NothingToRollBack(detail=f"experiment {name!r} has no earlier settings to roll back to")
            previous = _stored_experiment(name, raw_previous)
            restored = msgspec.structs.replace(
                previous, version=current.version + 1, updated_at=time.time(), incarnation=current.incarnation
            )
            with translate_redis_errors():
                outcome = await self.scripts.update_experiment(
                    keys=[keys.config(name), keys.stats(name), keys.latency(name), keys.config_history(name)],
                    args=[str(current.version), _encode(restored), "", "pop", CONFIG_HISTORY_KEPT],
                )
                if outcome == -1:
                    raise ExperimentNotFound(name)
                if outcome == 1:
                    await self.redis.publish(keys.CHANGES_CHANNEL, name)
                    return restored
        raise ConcurrentUpdate(detail=f"experiment {name!r} kept changing during the rollback; retry")

    async def delete(self, name: str) -> None:
        with translate_redis_errors():
            await self.redis.delete(keys.config_history(name))
            deleted = await self.redis.delete(keys.config(name), keys.stats(name), keys.latency(name))
            await self.redis.srem(keys.EXPERIMENTS, name)
            await self.redis.publish(keys.CHANGES_CHANNEL, name)
        if not deleted:
            raise ExperimentNotFound(name)

    # -- counters ------------------------------------------------------------------
    async def counters(self, name: str, arms: Sequence[str], discount: float = 1.0) -> ArmCounters:
        with translate_redis_errors():
            raw = await self.redis.hgetall(keys.stats(name))
        return parse_counters(as_bytes_hash(raw), arms, discount)

    async def latency_histograms(self, name: str) -> dict[str, dict[int, int]]:
        """Latency histogram per arm: {arm: {bucket: count}}."""
        with translate_redis_errors():
            raw = await self.redis.hgetall(keys.latency(name))
        histograms: dict[str, dict[int, int]] = {}
        for field, count in raw.items():
            arm, _, bucket = as_text(field).rpartition(":")
            histograms.setdefault(arm, {})[int(bucket)] = int(count)
        return histograms

    async def record_feedback(
        self,
        name: str,
        incarnation: str,
        records: Sequence[FeedbackRecord],
        rules: ObservationRules | None = None,
    ) -> list[int]:
        """Count each reward once; one code per record (1 counted, 0 duplicate, -1 stale, -2 gone)."""
        now = time.time()
        series_keys, series_expiry = self._series_key(name, incarnation, now)
        args: list[str | int] = [incarnation, *(rules or ObservationRules()).script_args(int(now)), series_expiry]
        for record in records:
            reward = record.reward
            args += [record.arm, repr(reward), repr(reward * reward), repr(record.scaled_reward), record.expires_at]
        with translate_redis_errors():
            codes = await self.scripts.record_feedback(
                keys=[keys.stats(name)] + [keys.feedback_seen(name, record.nonce) for record in records] + series_keys,
                args=args,
            )
        return [int(code) for code in codes]

    async def record_decisions(
        self, name: str, incarnation: str, counters: dict[str, int], latencies: dict[str, int]
    ) -> bool:
        """Add locally counted stats fields and latency buckets; False if the experiment was reset."""
        series_keys, series_expiry = self._series_key(name, incarnation, time.time())
        args: list[str | int] = [incarnation, series_expiry, len(counters)]
        for field, increment in counters.items():
            args += [field, increment]
        for field, increment in latencies.items():
            args += [field, increment]
        with translate_redis_errors():
            recorded = await self.scripts.record_decisions(
                keys=[keys.stats(name), keys.latency(name), *series_keys], args=args
            )
        return bool(recorded)

    def _series_key(self, name: str, incarnation: str, now: float) -> tuple[list[str], str | int]:
        """The current series bucket as an optional script key, and the time it expires at."""
        if self.series is None:
            return [], ""
        bucket = self.series.bucket_of(now)
        return [keys.series(name, incarnation, bucket)], self.series.expire_at(bucket)

    async def shared_secret(self) -> bytes:
        """The decision-id secret every replica agrees on, created on first use."""
        with translate_redis_errors():
            await self.redis.set(keys.SECRET, secrets.token_hex(32), nx=True)
            secret = await self.redis.get(keys.SECRET)
        assert secret is not None
        return secret if isinstance(secret, bytes) else secret.encode()

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[Any]:
        """A pub/sub subscription to experiment change notifications."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.CHANGES_CHANNEL)
            yield pubsub
        finally:
            # redis-py's close can wait forever for the socket to close (redis/redis-py#3941),
            # which would hold up a graceful shutdown: it gets a bounded time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), PUBSUB_CLOSE_TIMEOUT_S)  # type: ignore[no-untyped-call]
