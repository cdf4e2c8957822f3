"""Counters in Redis: decisions and latencies flushed in batches, rewards counted exactly once.

Both writes run in Lua scripts (record_decisions.lua, record_feedback.lua), which also add
what they count to the dashboard's current history bucket when one is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from bandit.core.counters import ArmCounters
from bandit.core.policy_adapter import ObservationRules
from bandit.store import keys
from bandit.store.connection import as_bytes_hash, as_text, translate_redis_errors
from bandit.store.lua import LuaScripts
from bandit.store.series import SeriesLayout


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One verified reward ready to be counted."""

    arm: str
    # Names the decision in its seen-marker key (keys.decision_marker).
    marker: str
    reward: float
    # Unix seconds after which the decision can no longer be rewarded.
    expires_at: int
    # The reward on the policy's scale ([0, 1] when bounded), for change detection and preferences.
    scaled_reward: float = 0.0


#: How long a replica's last flushed sequence is remembered: a batch retried later than this
#: after a lost reply could be counted twice. Outages are far shorter; one small key per
#: replica and experiment is the cost.
FLUSH_SEQUENCE_TTL_S = 86_400


@dataclass(frozen=True, slots=True)
class DecisionBatch:
    """Who sends a decision batch and its place in that sender's order, so a resend counts once."""

    replica: str
    # Increases with every batch the replica sends, whichever experiment it is for.
    sequence: int


def parse_counters(raw: dict[bytes, bytes], arms: Sequence[str], discount: float = 1.0) -> ArmCounters:
    """Counters of `arms` from the HGETALL of a counters hash, discounted statistics brought up to date."""

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


def rules_script_args(rules: ObservationRules, now_s: int) -> list[str | int]:
    """The feedback script's ARGV[2 ..] that carry the experiment's learning rules (see record_feedback.lua)."""
    detector = rules.change_detection
    gradient = rules.gradient
    return [
        repr(rules.discount),
        repr(detector.delta) if detector else "",
        repr(detector.threshold) if detector else "",
        detector.action if detector else "",
        repr(gradient.step_size) if gradient else "",
        repr(gradient.momentum) if gradient else "",
        int(gradient.baseline) if gradient else 0,
        now_s,
        len(rules.serving_arms),
        *rules.serving_arms,
    ]


class CounterStore:
    """Reads and writes the counters of experiments in Redis."""

    def __init__(self, redis: Redis, scripts: LuaScripts, layout: SeriesLayout | None = None) -> None:
        self._redis = redis
        self._scripts = scripts
        # The dashboard's time buckets that decisions and rewards are also added to (None: not kept).
        self._layout = layout

    async def read(self, name: str, arms: Sequence[str], discount: float = 1.0) -> ArmCounters:
        """The counters of `arms`, discounted statistics brought up to date."""
        with translate_redis_errors():
            raw = await self._redis.hgetall(keys.counters_hash(name))
        return parse_counters(as_bytes_hash(raw), arms, discount)

    async def latency_histograms(self, name: str) -> dict[str, dict[int, int]]:
        """Latency histogram per arm: {arm: {bucket: count}}."""
        with translate_redis_errors():
            raw = await self._redis.hgetall(keys.latency_histogram(name))
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
        args: list[str | int] = [incarnation, *rules_script_args(rules or ObservationRules(), int(now)), series_expiry]
        for record in records:
            reward = record.reward
            args += [record.arm, repr(reward), repr(reward * reward), repr(record.scaled_reward), record.expires_at]
        with translate_redis_errors():
            codes = await self._scripts.record_feedback(
                keys=[keys.counters_hash(name)]
                + [keys.feedback_seen(name, record.marker) for record in records]
                + series_keys,
                args=args,
            )
        return [int(code) for code in codes]

    async def record_decisions(
        self,
        name: str,
        incarnation: str,
        counters: dict[str, int],
        latencies: dict[str, int],
        batch: DecisionBatch,
    ) -> bool:
        """Add locally counted counter fields and latency buckets; False if the experiment was reset.

        A call repeated after a lost reply (same replica and sequence) adds nothing again.
        """
        series_keys, series_expiry = self._series_key(name, incarnation, time.time())
        args: list[str | int] = [incarnation, series_expiry, batch.sequence, FLUSH_SEQUENCE_TTL_S, len(counters)]
        for field, increment in counters.items():
            args += [field, increment]
        for field, increment in latencies.items():
            args += [field, increment]
        with translate_redis_errors():
            recorded = await self._scripts.record_decisions(
                keys=[
                    keys.counters_hash(name),
                    keys.latency_histogram(name),
                    keys.flush_sequence(name, batch.replica),
                    *series_keys,
                ],
                args=args,
            )
        return bool(recorded)

    def _series_key(self, name: str, incarnation: str, now: float) -> tuple[list[str], str | int]:
        """The current series bucket as an optional script key, and the time it expires at."""
        if self._layout is None:
            return [], ""
        bucket = self._layout.bucket_of(now)
        return [keys.series(name, incarnation, bucket)], self._layout.expire_at(bucket)
