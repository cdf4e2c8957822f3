"""Experiments' stats, computed from their counters in Redis and recomputed only when those change.

Allocation, credible intervals and P(best) cost milliseconds per experiment, and the dashboard
asks for every experiment's every second (the series sampler, the overview, each event
stream). Most of them are idle: their config, counters, latency histogram and the arm health
their stats show are what they were at the last computation. :class:`StatsMemo` keeps the
last stats with the raw inputs they came from and recomputes only when an input differs, so
an idle experiment costs one pipelined read and a comparison of bytes. P(best) and Thompson's
allocation are Monte-Carlo estimates: reusing them also keeps the numbers shown steady.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread
import msgspec
import numpy as np

from bandit.core.canary import with_canary_status
from bandit.core.errors import ExperimentNotFound, UnreadableExperiment
from bandit.core.models import Experiment
from bandit.core.payloads import AutopilotVerdict, ExperimentStats
from bandit.core.policy_adapter import experiment_stats
from bandit.core.ports import HealthView
from bandit.store import keys
from bandit.store.counters import experiment_counters
from bandit.store.experiments import decode_experiment
from bandit.store.series import SeriesStore
from bandit.store.stats_reads import StatsInputs, parse_latency_histograms

log = logging.getLogger("mab.stats")


@dataclass(slots=True)
class Computed:
    """An experiment's stats with what they were computed from."""

    experiment: Experiment
    stats: ExperimentStats
    inputs: StatsInputs
    health: tuple[str, ...]
    # Unix time of the first read that found these counters: no decision was flushed between
    # then and `checked_at` (the counters, and the history buckets with them, did not move).
    counters_since: float
    # When Redis last confirmed the inputs (time.monotonic()); `stats` are as of then.
    checked_at: float


def _settings_id(experiment: Experiment) -> tuple[str, int, float]:
    """What names one stored config: every change bumps its version, a reset or a re-creation
    its incarnation."""
    return experiment.incarnation, experiment.version, experiment.updated_at


class StatsMemo:
    """Per-process stats of each experiment, reused while their inputs are unchanged.

    `computations` counts the recomputations, so tests (and curious operators) can see that
    an idle experiment costs none.
    """

    def __init__(self, series: SeriesStore, health: HealthView) -> None:
        self._series = series
        self._health = health
        self._entries: dict[str, Computed] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.computations = 0

    async def current(self, name: str, max_age_s: float = 0.0) -> Computed:
        """The stats of `name`, confirmed against Redis within `max_age_s` (raises
        ExperimentNotFound, UnreadableExperiment, StoreUnavailable)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:  # many watchers of one experiment: one read, one computation
            entry = self._entries.get(name)
            if entry is not None and time.monotonic() - entry.checked_at < max_age_s:
                return entry
            started = time.monotonic()
            (inputs,) = await self._series.read_stats_inputs([name])
            return await self._update(inputs, None, started)

    async def current_many(self, names: Sequence[str], max_age_s: float = 0.0) -> dict[str, Computed]:
        """The stats of each experiment that exists and is readable (others are left out), those
        not confirmed within `max_age_s` read in one round trip (raises StoreUnavailable)."""
        found, stale = self._fresh(names, max_age_s)
        started = time.monotonic()
        for inputs in await self._series.read_stats_inputs(stale):
            async with self._locks.setdefault(inputs.name, asyncio.Lock()):
                try:
                    found[inputs.name] = await self._update(inputs, None, started)
                except ExperimentNotFound:
                    continue  # deleted between the listing and the read
                except UnreadableExperiment as error:
                    # The others stay readable; this one can be deleted.
                    log.warning("%s", error.detail, extra={"experiment": inputs.name})
        return {name: found[name] for name in names if name in found}

    async def current_of(self, experiments: Sequence[Experiment], max_age_s: float = 0.0) -> dict[str, Computed]:
        """Like `current_many` for experiments whose settings the caller holds (the proxy's
        snapshots): only their counters and latencies are read. One whose counters belong to
        another incarnation (reset or deleted meanwhile) is left out."""
        by_name = {experiment.name: experiment for experiment in experiments}
        found, stale = self._fresh(list(by_name), max_age_s)
        started = time.monotonic()
        for inputs in await self._series.read_stats_inputs(stale, config=False):
            experiment = by_name[inputs.name]
            if inputs.counters.get(keys.INCARNATION_FIELD.encode(), b"").decode() != experiment.incarnation:
                continue
            async with self._locks.setdefault(inputs.name, asyncio.Lock()):
                found[inputs.name] = await self._update(inputs, experiment, started)
        return {name: found[name] for name in by_name if name in found}

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)
        self._locks.pop(name, None)

    def keep_only(self, names: Sequence[str]) -> None:
        """Drop what is kept for experiments not among `names` (deleted ones): bounded memory."""
        for name in set(self._entries) - set(names):
            self.forget(name)

    def _fresh(self, names: Sequence[str], max_age_s: float) -> tuple[dict[str, Computed], list[str]]:
        """The entries confirmed within `max_age_s`, and the names to read."""
        now = time.monotonic()
        found: dict[str, Computed] = {}
        stale = []
        for name in names:
            entry = self._entries.get(name)
            if entry is not None and now - entry.checked_at < max_age_s:
                found[name] = entry
            else:
                stale.append(name)
        return found, stale

    async def _update(self, inputs: StatsInputs, known: Experiment | None, read_started: float) -> Computed:
        """The entry for freshly read `inputs` (with the settings `known` by the caller, else those
        in `inputs.config`): the previous one when nothing changed. Call under the name's lock."""
        name = inputs.name
        previous = self._entries.get(name)
        if previous is not None and previous.checked_at >= read_started:
            return previous  # confirmed by a read that began after ours: at least as fresh
        experiment = known if known is not None else self._decoded(inputs, previous)
        if known is None:
            raw_config = inputs.config
        else:  # keep the bytes the settings were last read as, so a full read can compare them
            same = previous is not None and _settings_id(previous.experiment) == _settings_id(known)
            raw_config = previous.inputs.config if previous is not None and same else None
        inputs = StatsInputs(name, raw_config, inputs.counters, inputs.latencies, inputs.verdict)
        # The health of each arm as this process sees it now, read on the event loop (ArmHealth is
        # not thread-safe); the stats are computed with exactly these states.
        health = tuple(self._health.state((experiment.name, arm.url)) for arm in experiment.arms)
        confirmed_at = time.time()
        same_counters = previous is not None and previous.inputs.counters == inputs.counters
        if (
            previous is not None
            and same_counters
            and _settings_id(previous.experiment) == _settings_id(experiment)
            and previous.health == health
            and previous.inputs.latencies == inputs.latencies
            and previous.inputs.verdict == inputs.verdict
        ):
            # Unchanged: the same numbers, now as of this read.
            previous.stats = msgspec.structs.replace(previous.stats, generated_at=confirmed_at)
            previous.inputs = inputs
            previous.checked_at = time.monotonic()
            return previous
        stats = await _compute(experiment, inputs, dict(zip((arm.url for arm in experiment.arms), health, strict=True)))
        self.computations += 1
        entry = Computed(
            experiment=experiment,
            stats=stats,
            inputs=inputs,
            health=health,
            counters_since=previous.counters_since if previous is not None and same_counters else confirmed_at,
            checked_at=time.monotonic(),
        )
        self._entries[name] = entry
        return entry

    def _decoded(self, inputs: StatsInputs, previous: Computed | None) -> Experiment:
        """The settings in `inputs.config`, decoded only when its bytes changed."""
        if inputs.config is None:
            self.forget(inputs.name)
            raise ExperimentNotFound(inputs.name)
        if previous is not None and previous.inputs.config == inputs.config:
            return previous.experiment
        return decode_experiment(inputs.name, inputs.config)


async def _compute(experiment: Experiment, inputs: StatsInputs, health: dict[str, str]) -> ExperimentStats:
    counters = experiment_counters(inputs.counters, experiment)
    verdict = decode_verdict(inputs.verdict)
    # Posterior summaries cost milliseconds to hundreds of them at many arms: off the event loop,
    # so invokes keep flowing while someone watches the stats.
    latencies = parse_latency_histograms(inputs.latencies)

    def compute() -> ExperimentStats:
        stats = experiment_stats(
            experiment, counters, latencies, lambda arm: health[arm.url], np.random.default_rng(), verdict
        )
        return with_canary_status(stats, experiment, counters, verdict)

    return await anyio.to_thread.run_sync(compute)


def decode_verdict(raw: bytes | None) -> AutopilotVerdict | None:
    """The stored guardrail verdict, or None when there is none or it is unreadable (then shown as not judged)."""
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=AutopilotVerdict)
    except msgspec.DecodeError:
        log.warning("unreadable guardrail verdict ignored")
        return None
