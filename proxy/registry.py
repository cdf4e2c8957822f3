"""Each process's snapshots of every experiment, refreshed off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from bandit.core.errors import StoreUnavailable
from bandit.core.models import Experiment
from bandit.store.counters import experiment_counters
from bandit.store.experiments import ExperimentStore, RoutingRecord, decode_experiment
from proxy.clients.base import Timeouts
from proxy.snapshot import Snapshot

log = logging.getLogger("mab.proxy.registry")
#: How long "no such experiment" is believed before Redis is asked again.
NEGATIVE_TTL_S = 1.0
#: How soon an experiment that this process just counted rewards for is re-read. Learning
#: policies need fresh statistics far more often than the full poll gives them: at 2,000
#: decisions/s a 0.5 s poll would route 1,000 decisions on statistics that ignore their
#: predecessors' rewards, which shows up directly as regret.
REWARDED_REFRESH_S = 0.05
#: An experiment that served no request here for this long is re-read only every
#: IDLE_REFRESH_S rather than every refresh interval: the poll's cost follows this process's
#: traffic, not the number of experiments (about 50 µs of CPU per experiment and read). Config
#: changes still arrive at once through the change notices, and an experiment that starts
#: serving again is back on the fast poll after its first flush.
ACTIVE_WINDOW_S = 10.0
IDLE_REFRESH_S = 10.0
#: Back-off between attempts to subscribe to change notices again after losing Redis.
RESUBSCRIBE_FIRST_S = 0.1
RESUBSCRIBE_MAX_S = 2.0


class SnapshotRegistry:
    """Experiment name -> Snapshot, kept fresh by polling and change notifications.

    It is the :class:`bandit.core.ports.Routing` the API and the dashboard are given.
    """

    def __init__(
        self,
        experiments: ExperimentStore,
        rng: np.random.Generator,
        refresh_interval_s: float,
        timeouts: Timeouts,
    ) -> None:
        self._experiments = experiments
        # The upstream timeouts of arms that set none of their own.
        self.timeouts = timeouts
        self.rng = rng
        self.refresh_interval_s = refresh_interval_s
        self.snapshots: dict[str, Snapshot] = {}
        self._missing: dict[str, float] = {}
        self._rewarded: set[str] = set()
        # When each experiment last served a request here, and when it was last read.
        self._served_at: dict[str, float] = {}
        self._read_at: dict[str, float] = {}
        # The record each experiment last failed to build from, so each failure is logged once.
        self._failed: dict[str, bytes | None] = {}
        # When each snapshot was last confirmed by a read from Redis (built, or found unchanged).
        self._confirmed_at: dict[str, float] = {}
        self.last_refresh = 0.0

    def get(self, name: str) -> Snapshot | None:
        """The snapshot of `name` if this process knows it (the hot path: no I/O)."""
        return self.snapshots.get(name)

    def experiment(self, name: str) -> Experiment | None:
        snapshot = self.snapshots.get(name)
        return snapshot.experiment if snapshot is not None else None

    def experiments(self) -> list[Experiment]:
        return [snapshot.experiment for snapshot in list(self.snapshots.values())]

    def forget(self, name: str) -> None:
        self.snapshots.pop(name, None)
        self._confirmed_at.pop(name, None)

    def snapshot_ages(self) -> dict[str, float]:
        now = time.monotonic()
        return {name: now - self._confirmed_at.get(name, now) for name in list(self.snapshots)}

    async def load(self, name: str) -> Snapshot | None:
        """Snapshot of an experiment this process has not seen yet, asking Redis at most once a second."""
        if time.monotonic() - self._missing.get(name, -NEGATIVE_TTL_S) < NEGATIVE_TTL_S:
            return None
        with contextlib.suppress(StoreUnavailable):
            await self.refresh(name)
        if name not in self.snapshots:
            self._missing[name] = time.monotonic()
            if len(self._missing) > 10_000:  # bound memory under a flood of unknown names
                self._missing.clear()
        return self.snapshots.get(name)

    async def refresh(self, name: str) -> None:
        """Re-read one experiment (after a change) and rebuild its snapshot."""
        await self._refresh_names([name])

    async def _refresh_names(self, names: list[str]) -> None:
        """Re-read the given experiments in one pipelined round trip."""
        for record in await self._experiments.routing_records(names):
            self._install(record)

    def note_served(self, names: Iterable[str]) -> None:
        """These experiments served requests here: keep them on the fast poll (the recorder tells)."""
        now = time.monotonic()
        for name in names:
            self._served_at[name] = now

    def note_rewarded(self, name: str) -> None:
        """This process counted rewards for `name`: re-read it soon (see REWARDED_REFRESH_S)."""
        if name in self.snapshots:
            self._rewarded.add(name)

    async def run_rewarded_refresh(self) -> None:
        """Re-read recently rewarded experiments every REWARDED_REFRESH_S, between full polls."""
        while True:
            await asyncio.sleep(REWARDED_REFRESH_S)
            if not self._rewarded:
                continue
            names, self._rewarded = sorted(self._rewarded), set()
            try:
                await self._refresh_names(names)
            except StoreUnavailable:
                pass  # the full poll logs outages; routing goes on from the last snapshot
            except Exception:
                log.exception("refresh of rewarded experiments failed")

    async def refresh_all(self) -> None:
        """Re-read every experiment in two pipelined round trips."""
        await self._refresh(everything=True)

    async def refresh_due(self) -> None:
        """Re-read the experiments that served here lately, new ones, and idle ones every IDLE_REFRESH_S."""
        await self._refresh(everything=False)

    async def _refresh(self, everything: bool) -> None:
        names = await self._experiments.names()
        now = time.monotonic()
        due = [name for name in names if everything or self._due(name, now)]
        records = await self._experiments.routing_records(due)
        for gone in set(self.snapshots) - set(names):
            del self.snapshots[gone]
            self._confirmed_at.pop(gone, None)
        for forgotten in set(self._read_at) - set(names):
            self._read_at.pop(forgotten, None)
            self._served_at.pop(forgotten, None)
        for record in records:
            self._install(record)
            self._read_at[record.name] = now
        self.last_refresh = time.time()

    def _due(self, name: str, now: float) -> bool:
        read_at = self._read_at.get(name)
        if read_at is None or name not in self.snapshots:
            return True
        if now - self._served_at.get(name, -math.inf) < ACTIVE_WINDOW_S:
            return True
        return now - read_at >= IDLE_REFRESH_S

    def _install(self, record: RoutingRecord) -> None:
        """Rebuild one snapshot; a record that cannot be built is logged and skipped, so one bad
        experiment never stops the refresh of the others (it keeps its last good snapshot)."""
        try:
            self._build(record)
        except Exception:
            # Once per bad record, not at every refresh: the same record fails the same way.
            if self._failed.get(record.name) != record.config:
                self._failed[record.name] = record.config
                log.exception(
                    "snapshot of experiment %r could not be rebuilt; keeping the last one",
                    record.name,
                    extra={"experiment": record.name},
                )
        else:
            self._failed.pop(record.name, None)
            if record.config is None:
                self._confirmed_at.pop(record.name, None)
            else:
                self._confirmed_at[record.name] = time.monotonic()

    def _build(self, record: RoutingRecord) -> None:
        name = record.name
        if record.config is None:
            self.snapshots.pop(name, None)
            return
        current = self.snapshots.get(name)
        source = (record.config, record.counters)
        if current is not None and current.source == source:
            # Nothing changed since the last read (an idle experiment): keep its queue of choices.
            return
        experiment = decode_experiment(name, record.config)
        counters = experiment_counters(record.counters, experiment)
        snapshot = Snapshot.build(experiment, counters, self.rng, self.timeouts, previous=current)
        snapshot.source = source
        self.snapshots[name] = snapshot
        self._missing.pop(name, None)

    async def run_polling(self) -> None:
        """Refresh every experiment forever; Redis outages are logged and waited out."""
        while True:
            try:
                await self.refresh_due()
            except StoreUnavailable:
                log.warning("Redis unavailable: routing from the last snapshot")
            except Exception:  # a bad record must not stop the loop that keeps routing fresh
                log.exception("snapshot refresh failed")
            await asyncio.sleep(self.refresh_interval_s)

    async def run_change_listener(self) -> None:
        """Rebuild an experiment's snapshot as soon as any replica announces a change.

        Pub/sub delivers nothing sent while this process was not subscribed, so after every
        (re)subscription all experiments are re-read once; then no change made during an
        outage waits for the next poll (which may be far off). Reconnection backs off from
        RESUBSCRIBE_FIRST_S to RESUBSCRIBE_MAX_S, not by the poll interval.
        """
        backoff = RESUBSCRIBE_FIRST_S
        while True:
            try:
                async with self._experiments.changes() as pubsub:
                    await self.refresh_all()
                    backoff = RESUBSCRIBE_FIRST_S
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self.refresh(message["data"].decode())
            except Exception as error:  # a Redis outage: subscribe again when it answers
                log.info("change subscription interrupted (%s); subscribing again", type(error).__name__)
            await asyncio.sleep(backoff)
            backoff = min(RESUBSCRIBE_MAX_S, backoff * 2)


@contextlib.asynccontextmanager
async def running(registry: SnapshotRegistry) -> Any:
    """Run the registry's background loops for the duration of the block."""
    tasks = [
        asyncio.create_task(registry.run_polling()),
        asyncio.create_task(registry.run_change_listener()),
        asyncio.create_task(registry.run_rewarded_refresh()),
    ]
    try:
        yield registry
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
