"""The counters and histograms each service process keeps for Prometheus.

`mab serve` gives every replica a directory of its own (PROMETHEUS_MULTIPROC_DIR, set before any
worker starts, see bandit/cli/servers.py), so prometheus-client keeps each worker's values in a
memory-mapped file there and a scrape of any worker sums them all: one replica's totals, however
many workers it runs. Outside `mab serve` (tests, an app embedding the service) the values live in
process memory and the scrape reads them directly.

Labels are the experiment and arm names only, both bounded (BANDIT_MAX_EXPERIMENTS, 256 arms); a
name a client sent is never a label before it was verified: a forged decision id counts under
``experiment=""``.

Recording costs ~1-2 µs per proxied request (one counter and one histogram bucket, children
cached per (experiment, arm)); `python -m loadtest.proxy_bench --targets service1,service1-nometrics`
measures it.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

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
        self.multiprocess = directory is not None
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
        self._served: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def served(self, experiment: str, arm: str, duration_s: float | None, error: str | None) -> None:
        """One request an arm answered (`error` None) or failed (`error` its kind); the hot path."""
        children = self._served.get((experiment, arm))
        if children is None:
            children = self._served[(experiment, arm)] = (
                self.decisions.labels(experiment, arm),
                self.upstream_duration.labels(experiment, arm),
            )
        if error is None:
            children[0].inc()
        else:
            self.upstream_errors.labels(experiment, arm, error).inc()
        if duration_s is not None:
            children[1].observe(duration_s)

    def shadow(self, experiment: str, arm: str, outcome: str) -> None:
        self.shadow_requests.labels(experiment, arm, outcome).inc()

    def feedback(self, experiment: str, outcome: str, items: int = 1) -> None:
        self.feedback_items.labels(experiment, outcome).inc(items)

    def rewarded(self, experiment: str, arm: str, total: float) -> None:
        self.reward_sum.labels(experiment, arm).inc(total)

    def forget(self, experiment: str) -> None:
        """Drop the cached children of a deleted experiment (its counted values stay, as counters do)."""
        for key in [key for key in self._served if key[0] == experiment]:
            del self._served[key]
