"""Decisions, errors and latencies counted in memory and flushed to Redis in batches."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from bandit.core.errors import StoreUnavailable
from bandit.core.latency_buckets import bucket_of
from bandit.store import keys
from bandit.store.counters import CounterStore

log = logging.getLogger("mab.proxy.recorder")


@dataclass(slots=True)
class _Pending:
    counters: Counter[str] = field(default_factory=Counter)
    latencies: Counter[str] = field(default_factory=Counter)


class DecisionRecorder:
    """Counts per (experiment, incarnation) locally; `flush` writes them in one script call each."""

    def __init__(self, counters: CounterStore, flush_interval_s: float) -> None:
        self._counters = counters
        self.flush_interval_s = flush_interval_s
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.dropped_decisions = 0

    def record(self, experiment: str, incarnation: str, arm: str, latency_ms: float | None, error: bool) -> None:
        """Count one forwarded request (hot path: dictionary updates only)."""
        pending = self._pending.get((experiment, incarnation))
        if pending is None:
            pending = self._pending[(experiment, incarnation)] = _Pending()
        if error:
            pending.counters[keys.errors_field(arm)] += 1
        else:
            pending.counters[keys.decisions_field(arm)] += 1
        if latency_ms is not None:
            pending.latencies[keys.latency_field(arm, bucket_of(latency_ms))] += 1

    def record_mirror_dropped(self, experiment: str, incarnation: str, arm: str) -> None:
        """Count one copy for a shadow arm that the full mirror queue turned away."""
        pending = self._pending.get((experiment, incarnation))
        if pending is None:
            pending = self._pending[(experiment, incarnation)] = _Pending()
        pending.counters[keys.mirror_dropped_field(arm)] += 1

    async def flush(self) -> None:
        """Write everything counted so far; on a Redis outage keep it for the next flush."""
        batch, self._pending = self._pending, {}
        for index, ((experiment, incarnation), pending) in enumerate(batch.items()):
            try:
                recorded = await self._counters.record_decisions(
                    experiment, incarnation, dict(pending.counters), dict(pending.latencies)
                )
            except StoreUnavailable:
                self._merge_back(list(batch.items())[index:])
                raise
            if not recorded:  # the experiment was reset or deleted meanwhile
                self.dropped_decisions += sum(
                    n for f, n in pending.counters.items() if f.startswith(keys.decisions_field(""))
                )

    def _merge_back(self, unflushed: list[tuple[tuple[str, str], _Pending]]) -> None:
        for key, pending in unflushed:
            current = self._pending.setdefault(key, _Pending())
            current.counters.update(pending.counters)
            current.latencies.update(pending.latencies)

    async def run(self) -> None:
        """Flush forever; a final flush happens on shutdown via `flush`."""
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except StoreUnavailable:
                log.warning("Redis unavailable: keeping decision counts for the next flush")
            except Exception:
                log.exception("decision flush failed")
