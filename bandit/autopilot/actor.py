"""The automatic actor of one process: each look, it leases, reads fresh, judges and acts.

Every process runs one, and for each experiment only the holder of its lease in Redis acts;
the lease moves when its holder stops renewing it (a crash, a partition). Each look reads the
settings, counters and recent history anew (the stats memo's read with no age allowed), so
nothing is judged on what a process last saw; a look during a Redis outage reads nothing and
does nothing. A change is written by the script that checks, in one step, that the settings
are still those judged and the lease still this process's, and that logs the audit entry:
an action happens once, and two replicas never both take it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time

import msgspec

from bandit.api.stats import Computed, StatsMemo
from bandit.autopilot.decide import decide, guardrail_figures, judged_span_s
from bandit.core.errors import MabError
from bandit.core.payloads import AuditEntry, AutopilotVerdict
from bandit.core.policy_adapter import policy_statistics
from bandit.core.ports import Routing
from bandit.store.autopilot_state import AutopilotStore
from bandit.store.counters import experiment_counters
from bandit.store.experiments import ExperimentStore, LeaseLost, SettingsMoved
from bandit.store.series import SeriesStore

log = logging.getLogger("mab.autopilot")
_encode = msgspec.json.Encoder().encode


class Autopilot:
    """Guardrails, canaries and auto-promotion for the experiments this process routes."""

    def __init__(
        self,
        experiments: ExperimentStore,
        state: AutopilotStore,
        series: SeriesStore,
        memo: StatsMemo,
        routing: Routing,
        interval_s: float,
    ) -> None:
        self.experiments = experiments
        self.state = state
        self.series = series
        self.memo = memo
        self.routing = routing
        self.interval_s = interval_s
        self.token = secrets.token_hex(8)
        # Three missed renewals before another process takes over.
        self.lease_ms = max(3000, int(3000 * interval_s))
        self.verdict_ttl_s = max(10, int(10 * interval_s))
        self._held: set[str] = set()

    async def act_once(self, now: float | None = None) -> list[AuditEntry]:
        """One look at every automated experiment this process holds the lease of; the actions taken."""
        names = sorted(experiment.name for experiment in self.routing.experiments() if experiment.automated())
        held = await self.state.hold(names, self.token, self.lease_ms)
        self._held = {name for name, mine in zip(names, held, strict=True) if mine}
        if not self._held:
            return []
        computed = await self.memo.current_many(sorted(self._held), max_age_s=0.0)
        now = time.time() if now is None else now
        judged = [entry for entry in computed.values() if entry.experiment.automated()]
        guarded = [entry for entry in judged if entry.experiment.guardrails is not None]
        buckets = await self._windows(guarded, now)
        taken, verdicts = [], []
        for entry in judged:
            try:
                outcome = await self._act(entry, buckets.get(entry.experiment.name, []), now)
            except MabError as error:  # deleted meanwhile, or Redis gone for its slot: the others go on
                log.warning("automatic actions of %s skipped: %s", entry.experiment.name, error.detail)
                continue
            except Exception:
                log.exception("automatic actions of %s failed", entry.experiment.name)
                continue
            if outcome is not None:
                verdict, done = outcome
                if verdict:
                    verdicts.append((entry.experiment.name, verdict))
                if done is not None:
                    taken.append(done)
        await self.state.write_verdicts(verdicts, self.verdict_ttl_s)
        return taken

    async def _windows(self, guarded: list[Computed], now: float) -> dict[str, list[tuple[float, dict[bytes, bytes]]]]:
        """The history buckets each guarded experiment's window spans, read in one round trip per window length."""
        by_window: dict[int, list[Computed]] = {}
        for entry in guarded:
            by_window.setdefault(math.ceil(judged_span_s(entry.experiment, now)), []).append(entry)
        buckets: dict[str, list[tuple[float, dict[bytes, bytes]]]] = {}
        for window_s, entries in by_window.items():
            targets = [(entry.experiment.name, entry.experiment.incarnation) for entry in entries]
            for entry, window in zip(entries, await self.series.recent(targets, now - window_s, now), strict=True):
                buckets[entry.experiment.name] = window
        return buckets

    async def _act(
        self, entry: Computed, buckets: list[tuple[float, dict[bytes, bytes]]], now: float
    ) -> tuple[bytes, AuditEntry | None] | None:
        """Judge one experiment and apply what it calls for; its verdict for stats (None: no
        guardrails) and the audit entry of what was done."""
        experiment = entry.experiment
        figures = guardrail_figures(experiment, buckets, now, self.series.layout.bucket_s)
        arms = [arm.name for arm in experiment.arms]
        counters = experiment_counters(entry.inputs.counters, experiment)
        decisions = {arm: int(count) for arm, count in zip(arms, counters.decisions, strict=True)}
        action = decide(experiment, entry.stats, policy_statistics(experiment, counters), decisions, figures, now)
        version, done = experiment.version, None
        if action is not None:
            try:
                updated = await self.experiments.apply_automatic(experiment, action.changed, action.entry, self.token)
            except (SettingsMoved, LeaseLost) as moved:
                log.info("automatic change of %s not made: %s", experiment.name, type(moved).__name__)
            else:
                version, done = updated.version, action.entry
                await self.routing.refresh(experiment.name)
                log.warning(
                    "experiment %s: %s %s by %s: %s",
                    experiment.name,
                    done.action,
                    done.arm or "",
                    done.actor,
                    done.reason,
                    extra={"experiment": experiment.name, "arm": done.arm},
                )
        if experiment.guardrails is None:
            return (b"", done) if done is not None else None
        verdict = AutopilotVerdict(
            judged_at=now, version=version, incarnation=experiment.incarnation, guardrails=figures
        )
        return _encode(verdict), done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.act_once()
            except MabError as error:
                # Nothing read, nothing done: the next look reads afresh.
                log.warning("automatic actions skipped: %s", error.detail)
            except Exception:
                log.exception("automatic actions failed")

    async def release(self) -> None:
        """Give up this process's leases (on shutdown) so another replica acts at once."""
        try:
            await self.state.release(sorted(self._held), self.token)
        except MabError as error:
            log.warning("leases not released (they expire by themselves): %s", error.detail)
