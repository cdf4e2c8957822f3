"""The decision log: each logged decision and, when it arrives, its reward, in a Redis stream.

One stream per experiment (`mab:{name}:log`): a decision entry `k=d` carries its id, time (ms),
arm, propensity, settings version and unit; a reward entry `k=r` the decision id and reward,
written once the feedback script counted it (so never twice). Decisions are appended by the
recorder's flush; a flush sent again after a lost reply may append a decision twice, so
readers join by decision id, which also joins rewards to decisions (a reward may come first). Bounded by length (`XADD
MAXLEN ~`) and age (`XTRIM MINID ~` at each append). The fields are short on purpose: at 10^5
decisions per experiment every byte counts (BENCHMARKS.md measures them). A later decision
can carry its request's context features in a field of its own (`x`), as contextual policies
will need, without changing the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from bandit.core.models import DecisionLogSettings
from bandit.store import keys
from bandit.store.connection import StoreClient, as_bytes_hash, as_text, translate_redis_errors

DECISION, REWARD = "d", "r"
#: Entries read per XRANGE while exporting.
READ_CHUNK = 2000
#: How much later than its decision an entry may have been written, for `since` reads.
FLUSH_LAG_MS = 300_000


def sampled(decision: str, share: float) -> bool:
    """Is `decision` in the logged `share`? Decided by its id, so the proxy that logs a decision
    and the replica that logs its reward agree without telling each other."""
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(decision.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    decision: str
    at_ms: int
    arm: str
    propensity: float
    version: int
    unit: str | None = None


@dataclass(slots=True)
class LogRow:
    """A decision joined with its reward (None until one is counted)."""

    decision: str
    at_ms: int
    arm: str
    propensity: float
    version: int
    unit: str | None
    reward: float | None = None


def _decision_fields(entry: LoggedDecision) -> dict[str, str | int | float]:
    fields: dict[str, str | int | float] = {
        "k": DECISION,
        "d": entry.decision,
        "t": entry.at_ms,
        "a": entry.arm,
        "p": repr(entry.propensity),
        "v": entry.version,
    }
    if entry.unit is not None:
        fields["u"] = entry.unit
    return fields


class DecisionLogStore:
    """Appends to and reads the decision logs of one Redis."""

    def __init__(self, redis: StoreClient) -> None:
        self._redis = redis

    async def append(
        self, batches: Sequence[tuple[str, DecisionLogSettings, Sequence[LoggedDecision]]], now_ms: int
    ) -> None:
        """Append each experiment's decisions, trimming its stream by length and age (StoreUnavailable)."""
        if not batches:
            return
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, settings, entries in batches:
                    stream = keys.decision_log(name)
                    for entry in entries:
                        pipe.xadd(stream, _decision_fields(entry), maxlen=settings.max_entries, approximate=True)  # type: ignore[arg-type]
                    pipe.xtrim(stream, minid=now_ms - settings.max_age_s * 1000, approximate=True)
                await pipe.execute()

    async def append_rewards(
        self, name: str, settings: DecisionLogSettings, rewards: Sequence[tuple[str, float]]
    ) -> None:
        """Log counted rewards (decision id, reward); a decision that was not logged is skipped on export."""
        if not rewards:
            return
        stream = keys.decision_log(name)
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for decision, reward in rewards:
                    fields = {"k": REWARD, "d": decision, "r": repr(reward)}
                    pipe.xadd(stream, fields, maxlen=settings.max_entries, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()

    async def rows(self, name: str, since_ms: int = 0) -> AsyncIterator[list[LogRow]]:
        """The logged decisions from `since_ms` on, oldest first, with their rewards, once each.

        Read in chunks, joined in memory (the stream is bounded by its settings); yields the
        rows in chunks once every entry is read, since a reward comes after its decision.
        """
        rows: dict[str, LogRow] = {}
        rewards: dict[str, float] = {}
        # Entries are stamped when flushed, after their decision (long after, if Redis was away):
        # read from a while before and keep the decisions made since `since_ms`.
        start = f"{max(0, since_ms - FLUSH_LAG_MS)}-0"
        stream = keys.decision_log(name)
        while True:
            with translate_redis_errors():
                entries: list[Any] = await self._redis.xrange(stream, min=start, max="+", count=READ_CHUNK) or []
            for _entry_id, raw in entries:
                fields = {as_text(k): as_text(v) for k, v in as_bytes_hash(raw).items()}
                decision = fields.get("d")
                if decision is None:
                    continue
                if fields.get("k") == DECISION and decision not in rows and int(fields.get("t", 0)) >= since_ms:
                    rows[decision] = LogRow(
                        decision=decision,
                        at_ms=int(fields.get("t", 0)),
                        arm=fields.get("a", ""),
                        propensity=float(fields.get("p", "nan")),
                        version=int(fields.get("v", 0)),
                        unit=fields.get("u"),
                    )
                elif fields.get("k") == REWARD:
                    # A reward may be logged before its decision (the decision waits for the
                    # recorder's flush, the reward is written when counted).
                    rewards[decision] = float(fields["r"])
            if len(entries) < READ_CHUNK:
                break
            last = as_text(entries[-1][0])
            start = f"({last}"
        for decision, reward in rewards.items():
            row = rows.get(decision)
            if row is not None:
                row.reward = reward
        ordered = list(rows.values())
        for offset in range(0, len(ordered), READ_CHUNK):
            yield ordered[offset : offset + READ_CHUNK]
