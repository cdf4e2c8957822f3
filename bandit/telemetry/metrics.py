"""The counters and histograms each service process keeps for Prometheus.

`mab serve` gives every replica a directory of its own (PROMETHEUS_MULTIPROC_DIR, set before any
worker starts, see bandit/cli/servers.py), so prometheus-client keeps each worker's values in a
memory-mapped file there and a scrape of any worker sums them all: one replica's totals, however
many workers it runs. Outside `mab serve` (tests, an app embedding the service) the values live in
process memory and the scrape reads them directly.

Labels are the experiment and arm names only, both bounded (BANDIT_MAX_EXPERIMENTS, 256 arms); a
name a client sent is never a label before it was verified: a forged decision id counts under
``experiment=""``.

A counter and a histogram updated per request cost 3 to 6 µs more (each value written to its
memory map under a lock; BENCHMARKS.md, issue 14): the proxy counts its requests in a `ServedTally` instead, plain
dictionary updates, and adds them to the metrics every BANDIT_FLUSH_INTERVAL (0.2 s), in a task
of their own that never waits on Redis. `python -m loadtest.hot_path_cost` measures what is left per request.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("mab.metrics")
#: Upstream durations in seconds: a model answers in milliseconds to seconds.
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Kinds of upstream failure, `kind` of mab_upstream_errors_total (see proxy/exceptions.py).
ERROR_KINDS = ("connect", "connect_timeout", "timeout", "reset", "failed", "http_5xx")
#: Outcomes of feedback items: counted, a repeat of one counted, refused, or past its window / reset.
FEEDBACK_OUTCOMES = ("accepted", "duplicate", "rejected", "stale")
#: Outcomes of a copy offered to a shadow arm: answered, answered with a failure, or not sent (queue full).
SHADOW_OUTCOMES = ("sent", "failed", "dropped")


def multiprocess_directory() -> str | None:
    """The directory the workers of this replica keep their values in, when they share one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServiceMetrics:
    """This process's counters; `registry` is what a scrape of this process reads."""

    def __init__(self) -> None:
        # Registered in a registry of our own, never the global one: two services in one process
        # (tests) each count their own.
        own = CollectorRegistry(auto_describe=True)
        directory = multiprocess_directory()
        if directory is not None:
            # The values go to the shared files; a scrape reads every worker's, this one's included.
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]
        else:
            self.registry = own
        # Where the replica's workers keep their values (None: in this process's memory).
        self.directory = directory
        self.decisions = Counter(
            "mab_decisions",
            "Requests an arm answered (for a shadow arm: the copies it answered), as counted in stats' decisions.",
            ["experiment", "arm"],
            registry=own,
        )
        self.upstream_duration = Histogram(
            "mab_upstream_request_duration_seconds",
            "Time from choosing an arm to the end of its answer.",
            ["experiment", "arm"],
            buckets=DURATION_BUCKETS_S,
            registry=own,
        )
        self.upstream_errors = Counter(
            "mab_upstream_errors",
            "Requests an arm failed, by kind: " + ", ".join(ERROR_KINDS) + ".",
            ["experiment", "arm", "kind"],
            registry=own,
        )
        self.shadow_requests = Counter(
            "mab_shadow_requests",
            "Copies of served requests offered to shadow arms, by outcome: " + ", ".join(SHADOW_OUTCOMES) + ".",
            ["experiment", "arm", "outcome"],
            registry=own,
        )
        self.feedback_items = Counter(
            "mab_feedback_items",
            "Feedback items this replica answered, by outcome: " + ", ".join(FEEDBACK_OUTCOMES) + ".",
            ["experiment", "outcome"],
            registry=own,
        )
        # Rewards may be negative: a gauge, summed over the workers (and kept from those that exited).
        self.reward_sum = Gauge(
            "mab_reward_sum",
            "Sum of the rewards this replica counted (after any latency penalty).",
            ["experiment", "arm"],
            registry=own,
            multiprocess_mode="sum",
        )
        # The children of each (experiment, arm) served, looked up once: labels() costs ~1 µs.
        # As many as the metrics keep themselves (a label set stays until the process ends).
        self._served: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def served(self, experiment: str, arm: str, counts: ArmTally) -> None:
        """Add what `counts` holds of one arm's requests since the last time."""
        children = self._served.get((experiment, arm))
        if children is None:
            children = self._served[(experiment, arm)] = (
                self.decisions.labels(experiment, arm),
                self.upstream_duration.labels(experiment, arm),
            )
        if counts.decisions:
            children[0].inc(counts.decisions)
        for kind, failed in counts.failures.items():
            self.upstream_errors.labels(experiment, arm, kind).inc(failed)
        if counts.durations:
            # What `observe` does once per value, done once per bucket: prometheus-client's
            # histogram keeps a value per bucket (non-cumulative) and one for the sum.
            # tests/telemetry/test_metrics.py checks the result against `observe`.
            histogram = children[1]
            for index, observed in counts.durations.items():
                histogram._buckets[index].inc(observed)
            histogram._sum.inc(counts.duration_sum_s)

    # The three below are called where a request is being answered: like `ServedTally.publish`
    # they never raise (a failing metric is logged, the request goes on).
    def shadow(self, experiment: str, arm: str, outcome: str, copies: int = 1) -> None:
        try:
            self.shadow_requests.labels(experiment, arm, outcome).inc(copies)
        except Exception:
            log.exception("shadow metrics of %s could not be updated", experiment)

    def feedback(self, experiment: str, outcome: str, items: int = 1) -> None:
        try:
            self.feedback_items.labels(experiment, outcome).inc(items)
        except Exception:
            log.exception("feedback metrics of %s could not be updated", experiment)

    def rewarded(self, experiment: str, arm: str, total: float) -> None:
        try:
            self.reward_sum.labels(experiment, arm).inc(total)
        except Exception:
            log.exception("reward metrics of %s could not be updated", experiment)


@dataclass(slots=True)
class ArmTally:
    """One arm's requests since the last flush."""

    decisions: int = 0
    failures: Tally[str] = field(default_factory=Tally)
    # Index in DURATION_BUCKETS_S (len: +Inf) -> requests whose duration falls in that bucket.
    durations: Tally[int] = field(default_factory=Tally)
    duration_sum_s: float = 0.0
    # Copies for this (shadow) arm that the full mirror queue turned away.
    shadow_dropped: int = 0


class ServedTally:
    """Requests counted on the hot path (dictionary updates), added to `metrics` by `publish`."""

    __slots__ = ("_metrics", "_pending")

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._pending: dict[tuple[str, str], ArmTally] = {}

    def count(self, experiment: str, arm: str, duration_s: float | None, failure: str | None) -> None:
        """One request an arm answered (`failure` None) or failed (`failure`: its kind)."""
        tally = self._pending.get((experiment, arm))
        if tally is None:
            tally = self._pending[(experiment, arm)] = ArmTally()
        if failure is None:
            tally.decisions += 1
        else:
            tally.failures[failure] += 1
        if duration_s is not None:
            # Prometheus's buckets hold values <= their bound: the first bound not below it.
            tally.durations[bisect.bisect_left(DURATION_BUCKETS_S, duration_s)] += 1
            tally.duration_sum_s += duration_s

    def dropped(self, experiment: str, arm: str) -> None:
        """One copy for a shadow arm that the full mirror queue turned away."""
        tally = self._pending.get((experiment, arm))
        if tally is None:
            tally = self._pending[(experiment, arm)] = ArmTally()
        tally.shadow_dropped += 1

    def publish(self) -> None:
        """Add what was counted to the metrics. Never raises: the metrics are the operator's view,
        and a failure of theirs (a full disk under the multiprocess files) must not stop the
        decision counts that the policies learn from; what could not be added is logged and dropped."""
        pending, self._pending = self._pending, {}
        for (experiment, arm), tally in pending.items():
            try:
                self._metrics.served(experiment, arm, tally)
                if tally.shadow_dropped:
                    self._metrics.shadow(experiment, arm, "dropped", tally.shadow_dropped)
            except Exception:
                log.exception("metrics of arm %s of %s could not be updated", arm, experiment)

    async def run(self, interval_s: float) -> None:
        """Publish every `interval_s`, forever (a task of its own: nothing here waits on Redis)."""
        while True:
            await asyncio.sleep(interval_s)
            self.publish()
