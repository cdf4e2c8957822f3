"""Decisions, errors and latencies counted in memory and flushed to Redis in batches."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from bandit.core.errors import StoreUnavailable
from bandit.core.latency_buckets import bucket_of
from bandit.core.models import DecisionLogSettings
from bandit.core.pending_conversions import age_slot
from bandit.store import keys
from bandit.store.counters import CounterStore, DecisionBatch, DecisionFlush
from bandit.store.decision_log import DecisionLogStore, LoggedDecision
from bandit.telemetry.metrics import ServedTally, ServiceMetrics
from proxy.snapshot import Snapshot

log = logging.getLogger("mab.proxy.recorder")
#: Logged decisions kept in memory while Redis is away, over all experiments.
MAX_LOG_PENDING = 100_000


@dataclass(slots=True)
class _Pending:
    """Counts keyed by plain tuples on the hot path; spelled as Redis hash fields only at flush."""

    decisions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    mirror_dropped: Counter[str] = field(default_factory=Counter)
    # (arm, latency bucket) -> requests
    latencies: Counter[tuple[str, int]] = field(default_factory=Counter)
    # Thousandths of a decision each arm was expected to get (keys.EXPECTED_SCALE).
    expected: Counter[str] = field(default_factory=Counter)
    # Conversion mode: (arm, age slot) -> decisions (bandit/core/pending_conversions.py).
    age_slots: Counter[tuple[str, int]] = field(default_factory=Counter)

    def update(self, other: _Pending) -> None:
        self.decisions.update(other.decisions)
        self.errors.update(other.errors)
        self.mirror_dropped.update(other.mirror_dropped)
        self.latencies.update(other.latencies)
        self.expected.update(other.expected)
        self.age_slots.update(other.age_slots)

    def counter_fields(self) -> dict[str, int]:
        """The counts as fields of the experiment's counters hash."""
        fields = {keys.decisions_field(arm): n for arm, n in self.decisions.items()}
        fields.update((keys.errors_field(arm), n) for arm, n in self.errors.items())
        fields.update((keys.mirror_dropped_field(arm), n) for arm, n in self.mirror_dropped.items())
        fields.update((keys.expected_field(arm), n) for arm, n in self.expected.items() if n)
        fields.update((keys.age_slot_field(arm, slot), n) for (arm, slot), n in self.age_slots.items())
        return fields

    def latency_fields(self) -> dict[str, int]:
        return {keys.latency_field(arm, bucket): n for (arm, bucket), n in self.latencies.items()}


@dataclass(slots=True)
class _Batch:
    """Counts with the sequence number they are sent under; frozen once a send was tried."""

    sequence: int
    pending: _Pending
    tried: bool = False


class DecisionRecorder:
    """Counts per (experiment, incarnation) locally; `flush` writes them in one script call each.

    A send that fails with Redis unreachable may still have been applied (the reply, not the
    write, was lost). That batch is sent again unchanged, under its sequence number, and the
    script skips it if it was applied; counts made meanwhile wait in a second batch behind it.
    So each key holds at most two batches, however long Redis is away.
    """

    def __init__(
        self,
        counters: CounterStore,
        flush_interval_s: float,
        on_counted: Callable[[Collection[str]], None] | None = None,
        metrics: ServiceMetrics | None = None,
        decision_log: DecisionLogStore | None = None,
    ) -> None:
        self._counters = counters
        self._decision_log = decision_log
        # Logged decisions waiting for the flush, per experiment, with its log settings.
        self._logged: dict[str, tuple[DecisionLogSettings, list[LoggedDecision]]] = {}
        self._logged_count = 0
        self.log_dropped = 0
        # The same counts, for this process's Prometheus metrics (None: BANDIT_METRICS=false),
        # added to them at each flush.
        self._tally = ServedTally(metrics) if metrics is not None else None
        self.flush_interval_s = flush_interval_s
        # Told the experiments that served requests since the last flush (the registry keeps those fresh).
        self._on_counted = on_counted
        self._pending: dict[tuple[str, str], _Pending] = {}
        # The feedback window of each experiment in conversion mode, as its snapshots last said.
        self._conversion_windows: dict[str, float] = {}
        # id(snapshot) -> [snapshot, requests routed by it]: what its allocation promised, added up at flush.
        self._assigned: dict[int, list[Any]] = {}
        self._outbox: dict[tuple[str, str], list[_Batch]] = {}
        self._replica = secrets.token_hex(8)
        self._sequence = itertools.count(1)
        self.dropped_decisions = 0

    def record(
        self, experiment: str, incarnation: str, arm: str, latency_ms: float | None, failure: str | None
    ) -> None:
        """Count one forwarded request, answered (`failure` None) or failed (`failure`: its kind,
        see bandit.telemetry.metrics.ERROR_KINDS); the hot path: dictionary updates only."""
        pending = self._pending.get((experiment, incarnation))
        if pending is None:
            pending = self._pending[(experiment, incarnation)] = _Pending()
        if self._tally is not None:
            self._tally.count(experiment, arm, None if latency_ms is None else latency_ms / 1000.0, failure)
        if failure is not None:
            pending.errors[arm] += 1
        else:
            pending.decisions[arm] += 1
        if latency_ms is not None:
            pending.latencies[arm, bucket_of(latency_ms)] += 1

    def assigned(self, snapshot: Snapshot) -> None:
        """One request's arm was drawn from `snapshot` (before health or caps had a say): at the
        flush, each arm is expected the share of it the snapshot's allocation announced. Summed
        over the decisions, that is what the sample-ratio check compares the decisions with."""
        tally = self._assigned.get(id(snapshot))
        if tally is None:
            self._assigned[id(snapshot)] = [snapshot, 1]
        else:
            tally[1] += 1

    async def _book_expected(self) -> None:
        assigned, self._assigned = self._assigned, {}
        if not assigned:
            return
        tallies = list(assigned.values())
        shares = [snapshot.estimated_allocation() for snapshot, _requests in tallies]
        missing = [index for index, share in enumerate(shares) if share is None]
        if missing:
            # Off the event loop: a Thompson estimate takes thousands of posterior draws.
            fresh = await asyncio.to_thread(lambda: [tallies[index][0].fresh_allocation() for index in missing])
            for index, share in zip(missing, fresh, strict=True):
                shares[index] = share
        for (snapshot, requests), share in zip(tallies, shares, strict=True):
            experiment = snapshot.experiment
            if experiment.reward.mode == "conversion":
                self._conversion_windows[experiment.name] = float(experiment.reward.window_s)
            else:
                self._conversion_windows.pop(experiment.name, None)
            pending = self._pending.get((experiment.name, experiment.incarnation))
            if pending is None:
                pending = self._pending[(experiment.name, experiment.incarnation)] = _Pending()
            assert share is not None
            for arm, value in zip(experiment.arms, share.tolist(), strict=True):
                if value > 0:
                    pending.expected[arm.name] += round(requests * value * keys.EXPECTED_SCALE)

    def _book_age_slots(self, now: float) -> None:
        """Conversion mode: the decisions of this flush in the current age slot of their experiment."""
        for (name, _incarnation), pending in self._pending.items():
            window = self._conversion_windows.get(name)
            if window is None:
                continue
            slot = age_slot(now, window)
            for arm, count in pending.decisions.items():
                pending.age_slots[arm, slot] += count

    def log_decision(self, settings: DecisionLogSettings, experiment: str, entry: LoggedDecision) -> None:
        """Keep a decision for the decision log until the next flush (past MAX_LOG_PENDING while Redis
        is away, the newest are dropped and counted: the log is bounded, the counts are not lost)."""
        if self._logged_count >= MAX_LOG_PENDING:
            self.log_dropped += 1
            return
        pending = self._logged.get(experiment)
        if pending is None:
            pending = self._logged[experiment] = (settings, [])
        pending[1].append(entry)
        self._logged_count += 1

    async def _flush_log(self) -> None:
        if self._decision_log is None or not self._logged:
            return
        logged, self._logged, count, self._logged_count = self._logged, {}, self._logged_count, 0
        batches = [(name, settings, entries) for name, (settings, entries) in logged.items()]
        try:
            await self._decision_log.append(batches, time.time_ns() // 1_000_000)
        except StoreUnavailable:
            # Not written (or not known to be): back in front of what was logged meanwhile, for the
            # next flush; a batch written twice is joined once by decision id on export.
            for name, (settings, entries) in self._logged.items():
                logged.setdefault(name, (settings, []))[1].extend(entries)
            self._logged, self._logged_count = logged, count + self._logged_count
            raise

    def record_mirror_dropped(self, experiment: str, incarnation: str, arm: str) -> None:
        """Count one copy for a shadow arm that the full mirror queue turned away."""
        pending = self._pending.get((experiment, incarnation))
        if pending is None:
            pending = self._pending[(experiment, incarnation)] = _Pending()
        pending.mirror_dropped[arm] += 1
        if self._tally is not None:
            self._tally.dropped(experiment, arm)

    async def flush(self) -> None:
        """Write everything counted so far; on a Redis outage keep it for the next flush."""
        if self._tally is not None:
            self._tally.publish()
        if self._on_counted is not None and self._pending:
            self._on_counted({experiment for experiment, _incarnation in self._pending})
        await self._book_expected()
        self._book_age_slots(time.time())
        self._move_pending_to_outbox()
        # The first batch of every experiment, all in one pipelined call; an experiment whose
        # first batch went through sends its second (counts made while the first was retried) next.
        unavailable: StoreUnavailable | None = None
        while self._outbox:
            heads = [(key, batches[0]) for key, batches in self._outbox.items()]
            for _key, batch in heads:
                batch.tried = True
            outcomes = await self._counters.record_decisions_many(
                [
                    DecisionFlush(
                        experiment,
                        incarnation,
                        batch.pending.counter_fields(),
                        batch.pending.latency_fields(),
                        DecisionBatch(self._replica, batch.sequence),
                    )
                    for (experiment, incarnation), batch in heads
                ]
            )
            progressed = False
            for (key, batch), outcome in zip(heads, outcomes, strict=True):
                if isinstance(outcome, StoreUnavailable):
                    # On a cluster only the primary of this experiment may be away (failing over):
                    # the batch stays, marked tried, and the other experiments are flushed.
                    unavailable = outcome
                    continue
                progressed = True
                batches = self._outbox[key]
                batches.pop(0)
                if not batches:
                    del self._outbox[key]
                if not outcome:  # the experiment was reset or deleted meanwhile
                    self.dropped_decisions += sum(batch.pending.decisions.values())
            if unavailable is not None or not progressed:
                break
        if unavailable is not None:
            raise unavailable
        await self._flush_log()

    def _move_pending_to_outbox(self) -> None:
        pending, self._pending = self._pending, {}
        for key, counts in pending.items():
            batches = self._outbox.setdefault(key, [])
            if batches and not batches[-1].tried:
                batches[-1].pending.update(counts)
            else:
                batches.append(_Batch(next(self._sequence), counts))

    async def run(self) -> None:
        """Flush forever, and add the counts to the metrics as often, whether Redis answers or not
        (a flush may wait on an absent Redis for seconds); a final flush happens on shutdown via `flush`."""
        if self._tally is None:
            await self._flush_forever()
        else:
            await asyncio.gather(self._flush_forever(), self._tally.run(self.flush_interval_s))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except StoreUnavailable:
                log.warning("Redis unavailable: keeping decision counts for the next flush")
            except Exception:
                log.exception("decision flush failed")
