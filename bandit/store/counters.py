"""Counters in Redis: decisions and latencies flushed in batches, rewards counted exactly once.

Both writes run in Lua scripts (record_decisions.lua, record_feedback.lua), which also add
what they count to the dashboard's current history bucket when one is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.errors import StoreUnavailable
from bandit.core.models import Experiment
from bandit.core.pending_conversions import exposure
from bandit.core.policy_adapter import ObservationRules, policy_discount
from bandit.store import keys
from bandit.store.connection import StoreClient, as_bytes_hash, as_text, translate_redis_errors
from bandit.store.durability import Durability, KeyConnections
from bandit.store.lua import LuaScripts
from bandit.store.series import SeriesLayout


class FeedbackRecord(NamedTuple):
    """One verified reward ready to be counted (a named tuple: one is built per reward, cheaply)."""

    arm: str
    # Names a decision without a sequence number (an id with a random nonce) in its
    # seen-marker key (keys.decision_marker); unused when `sequence` is set.
    marker: str
    reward: float
    # Unix seconds after which the decision can no longer be rewarded.
    expires_at: int
    # The reward on the policy's scale ([0, 1] when bounded), for change detection and preferences.
    scaled_reward: float = 0.0
    # The decision's issuer and sequence number (from its id): when set, it is marked rewarded by
    # one bit of that issuer's bitmap (keys.feedback_rewarded) instead of a key of its own.
    issuer: str | None = None
    sequence: int | None = None
    # Conversion mode: the delay bucket of the time from decision to this conversion
    # (bandit/core/pending_conversions.py); -1 in explicit mode.
    delay_bucket: int = -1


#: The feedback script's items argument (see record_feedback.lua).
_encode_items = msgspec.json.Encoder().encode


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


@dataclass(frozen=True, slots=True)
class DecisionFlush:
    """One experiment's counts to add: counter fields and latency buckets, and the batch they go in."""

    name: str
    incarnation: str
    counters: dict[str, int]
    latencies: dict[str, int]
    batch: DecisionBatch


def parse_counters(
    raw: dict[bytes, bytes],
    arms: Sequence[str],
    discount: float = 1.0,
    conversion_window_s: float | None = None,
    now: float | None = None,
) -> ArmCounters:
    """Counters of `arms` from the HGETALL of a counters hash, discounted statistics brought up to
    date; with `conversion_window_s`, the exposure of pending conversions as of `now` too."""

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
        expected=column(keys.expected_field) / keys.EXPECTED_SCALE,
        exposure=(
            None
            if conversion_window_s is None
            else _exposure(raw, arms, column(keys.decisions_field), conversion_window_s, now)
        ),
        policy_pulls=policy[0],
        policy_sum=policy[1],
        policy_sq_sum=policy[2],
        preferences=column(keys.preference_field),
        changes=column(keys.changes_field),
        last_change_at=column(keys.last_change_field),
    )


def _exposure(
    raw: dict[bytes, bytes], arms: Sequence[str], decisions: np.ndarray, window_s: float, now: float | None
) -> np.ndarray:
    """Decisions weighted by F(age), from the `ca:` age slots and the `dl:` delay histogram."""
    index = {arm: i for i, arm in enumerate(arms)}
    slots: list[dict[int, float]] = [{} for _ in arms]
    delays: dict[int, float] = {}
    for field, value in raw.items():
        if field.startswith(b"ca:"):
            arm, _, slot = field[3:].decode().rpartition(":")
            if arm in index:
                slots[index[arm]][int(slot)] = float(value)
        elif field.startswith(b"dl:"):
            delays[int(field[3:])] = float(value)
    return exposure(decisions, slots, delays, window_s, time.time() if now is None else now)


def experiment_counters(raw: dict[bytes, bytes], experiment: Experiment, now: float | None = None) -> ArmCounters:
    """`parse_counters` with everything the experiment's settings say about reading them."""
    window = float(experiment.reward.window_s) if experiment.reward.mode == "conversion" else None
    return parse_counters(raw, [arm.name for arm in experiment.arms], policy_discount(experiment), window, now)


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

    def __init__(
        self,
        redis: StoreClient,
        scripts: LuaScripts,
        layout: SeriesLayout | None = None,
        durability: Durability | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        # How many replicas must hold a write before it is acknowledged (default: the primary alone).
        self._durability = durability or Durability(KeyConnections(redis))
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
        if not records:
            return []
        now = time.time()
        series_keys, series_expiry = self._series_key(name, incarnation, now)
        # Every key the script touches is in KEYS (a cluster routes by them), each dedup key once;
        # the items travel as one JSON argument that points into KEYS and into the batch's arms.
        script_keys = [keys.counters_hash(name)]
        key_index: dict[str | tuple[str, int], int] = {}
        arm_index: dict[str, int] = {}
        fields: list[float | int] = []
        for arm, marker, reward, expires_at, scaled_reward, issuer, sequence, _delay in records:
            if issuer is None or sequence is None:
                offset = -1
                index = key_index.get(marker)
                if index is None:
                    script_keys.append(keys.feedback_seen(name, marker))
                    index = key_index[marker] = len(script_keys)
            else:
                block, offset = keys.rewarded_position(sequence)
                index = key_index.get((issuer, block))
                if index is None:
                    script_keys.append(keys.feedback_rewarded(name, issuer, block))
                    index = key_index[(issuer, block)] = len(script_keys)
            number = arm_index.get(arm)
            if number is None:
                number = arm_index[arm] = len(arm_index) + 1
            fields += (number, reward, scaled_reward, expires_at, index, offset)
        args: list[str | int | bytes] = [
            incarnation,
            *rules_script_args(rules or ObservationRules(), int(now)),
            series_expiry,
            _encode_items((list(arm_index), fields)),
        ]
        delays = [record.delay_bucket for record in records]
        if any(delay >= 0 for delay in delays):
            args.append(_encode_items(delays))
        all_keys = script_keys + series_keys

        async def write(client: StoreClient) -> list[int]:
            reply = await self._scripts.record_feedback(keys=all_keys, args=args, client=client)
            if isinstance(reply, int):  # -1 stale or -2 gone: the whole batch
                return [reply] * len(records)
            return [code - 48 for code in reply]  # b"1" counted, b"0" duplicate

        with translate_redis_errors():
            # Under durable acknowledgements a duplicate found by this call may have been counted
            # by another connection whose write is still on its way to the replicas: the fence, a
            # write of this connection after it, makes WAIT cover that one too.
            return await self._durability.write(
                keys.counters_hash(name),
                write,
                self._redis,
                fence=lambda codes: keys.ack_fence(name) if any(code == 0 for code in codes) else None,
            )

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
        (outcome,) = await self.record_decisions_many([DecisionFlush(name, incarnation, counters, latencies, batch)])
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    async def record_decisions_many(self, flushes: Sequence[DecisionFlush]) -> list[bool | StoreUnavailable]:
        """Flush many experiments' counts in one pipelined round trip per Redis primary.

        One outcome per flush: True, False (the experiment was reset or deleted meanwhile), or the
        StoreUnavailable it met; on a cluster a primary that is away fails only its own flushes.
        One script call per experiment and round trip costs ~300 µs of CPU each, most of it the
        client's; pipelined, a replica flushing 1,000 serving experiments pays that once.
        """
        now = time.time()
        calls = []
        for flush in flushes:
            series_keys, series_expiry = self._series_key(flush.name, flush.incarnation, now)
            args: list[str | int] = [
                flush.incarnation,
                series_expiry,
                flush.batch.sequence,
                FLUSH_SEQUENCE_TTL_S,
                len(flush.counters),
            ]
            for field, increment in flush.counters.items():
                args += [field, increment]
            for field, increment in flush.latencies.items():
                args += [field, increment]
            script_keys = [
                keys.counters_hash(flush.name),
                keys.latency_histogram(flush.name),
                keys.flush_sequence(flush.name, flush.batch.replica),
                *series_keys,
            ]
            calls.append((script_keys, args))
        replies = await self._durability.pipelined(
            [script_keys[0] for script_keys, _args in calls],
            lambda pipe, index: self._scripts.record_decisions(keys=calls[index][0], args=calls[index][1], client=pipe),
        )
        return [reply if isinstance(reply, StoreUnavailable) else bool(reply) for reply in replies]

    def _series_key(self, name: str, incarnation: str, now: float) -> tuple[list[str], str | int]:
        """The current series bucket as an optional script key, and the time it expires at."""
        if self._layout is None:
            return [], ""
        bucket = self._layout.bucket_of(now)
        return [keys.series(name, incarnation, bucket)], self._layout.expire_at(bucket)
