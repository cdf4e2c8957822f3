"""`GET /metrics`: the Prometheus text format.

Two kinds of series:
- what this replica counted, summed over its workers (bandit/telemetry/metrics.py): decisions,
  upstream durations and errors, shadow copies, feedback outcomes, reward sums. Sum them over
  replicas in PromQL (`sum by (experiment, arm) (rate(mab_decisions_total[5m]))`);
- gauges of the shared state, read at scrape time and the same on every replica: each arm's
  allocation, P(best), mean reward and health (`mab_arm_*`), whether Redis answers, and how old
  the routing snapshot of each experiment is in the worker that answered. Take `max` of them over
  replicas, not `sum`.

While Redis does not answer, the counters are still served, with `mab_redis_up 0` and no arm gauges:
that is when an operator needs them most.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio.to_thread
from litestar import Response, get
from litestar.exceptions import NotFoundException
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from bandit.api.stats import StatsMemo
from bandit.core.errors import MabError
from bandit.core.ports import Routing
from bandit.store.redis_store import RedisStore
from bandit.telemetry.metrics import ServiceMetrics

log = logging.getLogger("mab.metrics")
#: How old the stats behind the arm gauges may be: a scrape every few seconds reuses them.
STATS_MAX_AGE_S = 1.0
#: How long a scrape waits for Redis's PING: past it Redis counts as down, and the replica's own
#: counters (what matters then) are served at once.
REDIS_WAIT_S = 2.0
#: The replica's last rendering and the lock its workers render under, in its metrics directory
#: (prometheus-client reads only the *.db files there).
SHARED_RENDERING = "scrape.prom"
SHARED_LOCK = "scrape.lock"
#: How long a scrape waits for the arm gauges (after the PING): past it, the counters without them.
GAUGES_WAIT_S = 5.0
#: The classic text format, which every Prometheus reads (Litestar adds `; charset=utf-8`).
TEXT_FORMAT = "text/plain; version=0.0.4"


class _Families:
    """Metric families computed already, in the shape `generate_latest` reads (a collector)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def shared_state_families(store: RedisStore, memo: StatsMemo, routing: Routing) -> list[Metric]:
    """The gauges read from Redis and this worker's routing, at scrape time."""
    labels = ["experiment", "arm"]
    allocation = GaugeMetricFamily(
        "mab_arm_allocation", "Share of new requests the policy gives each arm.", labels=labels
    )
    p_best = GaugeMetricFamily("mab_arm_p_best", "Posterior probability that the arm is the best.", labels=labels)
    mean = GaugeMetricFamily("mab_arm_reward_mean", "Mean reward of the arm, as the policy weighs it.", labels=labels)
    healthy = GaugeMetricFamily("mab_arm_healthy", "1 while the arm takes traffic, 0 while ejected.", labels=labels)
    breached = GaugeMetricFamily(
        "mab_arm_guardrail_breached",
        "1 while the arm breaches its guardrails or is capped by them, 0 while it holds them.",
        labels=labels,
    )
    mismatch = GaugeMetricFamily(
        "mab_sample_ratio_mismatch",
        "1 while the sample-ratio check flags the experiment's decisions or feedback (p < 0.001).",
        labels=["experiment", "check"],
    )
    redis_up = GaugeMetricFamily("mab_redis_up", "1 when Redis answered this scrape.")
    age = GaugeMetricFamily(
        "mab_snapshot_age_seconds",
        "Seconds since the answering worker last read the experiment's routing state from Redis.",
        labels=["experiment"],
    )
    for name, seconds in sorted(routing.snapshot_ages().items()):
        age.add_metric([name], seconds)
    try:
        async with asyncio.timeout(REDIS_WAIT_S):
            await store.ping()
    except (MabError, TimeoutError, OSError) as error:
        log.warning("metrics without the shared state: Redis did not answer: %s", error)
        redis_up.add_metric([], 0)
        return [redis_up, age]
    redis_up.add_metric([], 1)
    try:
        # A deadline of its own, apart from the PING's: a fresh replica's first scrape computes
        # every experiment's stats once (2 ms for 3 arms, 40 ms for 50), and on a cluster one
        # primary may be away while PING (sent to one node) answers. What was computed before the
        # deadline is kept, so the next scrape goes further.
        async with asyncio.timeout(GAUGES_WAIT_S):
            computed = await memo.current_many(await store.experiments.names(), STATS_MAX_AGE_S)
    except (MabError, TimeoutError) as error:
        log.warning("metrics without the arm gauges: %s", error or f"not computed within {GAUGES_WAIT_S:g} s")
        return [redis_up, age]
    except Exception:  # the replica's counters are served whatever went wrong with the gauges
        log.exception("metrics without the arm gauges")
        return [redis_up, age]
    for name, entry in sorted(computed.items()):
        for arm in entry.stats.arms:
            key = [name, arm.name]
            allocation.add_metric(key, arm.allocation)
            p_best.add_metric(key, arm.p_best)
            if arm.mean is not None:
                mean.add_metric(key, arm.mean)
            healthy.add_metric(key, 1 if arm.healthy else 0)
            if arm.guardrail is not None:
                breached.add_metric(key, 1 if arm.guardrail.state == "breached" else 0)
        ratio = entry.stats.sample_ratio
        if ratio is not None:
            mismatch.add_metric([name, "decisions"], 1 if ratio.decisions.flagged else 0)
            if ratio.feedback is not None:
                mismatch.add_metric([name, "feedback"], 1 if ratio.feedback.flagged else 0)
    return [allocation, p_best, mean, healthy, breached, mismatch, redis_up, age]


def _render(registry: CollectorRegistry, shared: list[Metric]) -> bytes:
    return generate_latest(registry) + generate_latest(_Families(shared))


class MetricsExposition:
    """The text of this replica's scrape, rendered at most once per `max_age_s`.

    Rendering reads every worker's metric files and formats each series in Python, 10 to 20 µs a
    series (BENCHMARKS.md, issue 14): it runs in a thread (the loop goes on, sharing the
    interpreter lock with it), and one render serves every scrape that arrives within
    `max_age_s`, however many there are and whoever sends them.

    Under `mab serve` the rendering is shared by the replica's workers, in its metrics directory
    (`scrape.prom`, written whole and renamed into place, one worker rendering at a time under
    `scrape.lock`). A rendering kept per worker would let a scraper whose next connection lands
    on another worker read an older one, counters going backwards, which Prometheus takes for a
    restart of the counter.
    """

    def __init__(
        self, metrics: ServiceMetrics, store: RedisStore, memo: StatsMemo, routing: Routing, max_age_s: float
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._memo = memo
        self._routing = routing
        self.max_age_s = max_age_s
        self._shared = None if metrics.directory is None else Path(metrics.directory)
        self._lock = asyncio.Lock()
        self._text = b""
        self._rendered_at = -math.inf

    async def text(self) -> bytes:
        async with self._lock:  # scrapes that arrive during a render wait for it and share it
            if self._shared is not None:
                kept = await anyio.to_thread.run_sync(self._fresh_shared)
                if kept is not None:
                    return kept
                shared = await shared_state_families(self._store, self._memo, self._routing)
                return await anyio.to_thread.run_sync(self._render_shared, shared)
            if time.monotonic() - self._rendered_at >= self.max_age_s:
                shared = await shared_state_families(self._store, self._memo, self._routing)
                self._text = await anyio.to_thread.run_sync(_render, self._metrics.registry, shared)
                self._rendered_at = time.monotonic()
            return self._text

    def _fresh_shared(self) -> bytes | None:
        """The replica's last rendering if it is younger than `max_age_s`."""
        assert self._shared is not None
        path = self._shared / SHARED_RENDERING
        try:
            if time.time() - path.stat().st_mtime < self.max_age_s:
                return path.read_bytes()
        except FileNotFoundError:
            pass
        return None

    def _render_shared(self, shared: list[Metric]) -> bytes:
        """Render under the replica's lock, unless another worker did while this one waited for it."""
        assert self._shared is not None
        with (self._shared / SHARED_LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            kept = self._fresh_shared()
            if kept is not None:
                return kept
            text = _render(self._metrics.registry, shared)
            draft = self._shared / f"{SHARED_RENDERING}.{os.getpid()}"
            draft.write_bytes(text)
            os.replace(draft, self._shared / SHARED_RENDERING)
            return text


@get("/metrics", include_in_schema=False)
async def metrics_page(metrics_exposition: MetricsExposition | None) -> Response[bytes]:
    """The Prometheus exposition of this replica."""
    if metrics_exposition is None:
        raise NotFoundException(detail="metrics are off (BANDIT_METRICS=false)")
    return Response(await metrics_exposition.text(), media_type=TEXT_FORMAT)
