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
import logging
import math
import time
from collections.abc import Iterable, Sequence

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
        # No deadline here: a fresh replica's first scrape may compute every experiment's stats
        # once (~20 ms each, off the loop); cancelling it would only waste that work, and the
        # next scrape finds them kept. Redis's own socket timeouts bound the reads.
        computed = await memo.current_many(await store.experiments.names(), STATS_MAX_AGE_S)
    except MabError as error:
        log.warning("metrics without the arm gauges: %s", error)
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
    return [allocation, p_best, mean, healthy, redis_up, age]


def _render(registry: CollectorRegistry, shared: list[Metric]) -> bytes:
    return generate_latest(registry) + generate_latest(_Families(shared))


class MetricsExposition:
    """The text of this replica's scrape, rendered at most once per `max_age_s` by this worker.

    Rendering reads every worker's metric files and formats each series in Python, 10 to 20 µs a
    series (BENCHMARKS.md, issue 14): it runs in a thread, so requests on this worker's loop go
    on meanwhile, and one render serves every scrape that arrives within `max_age_s`, however
    many there are and whoever sends them.
    """

    def __init__(
        self, metrics: ServiceMetrics, store: RedisStore, memo: StatsMemo, routing: Routing, max_age_s: float
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._memo = memo
        self._routing = routing
        self.max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._text = b""
        self._rendered_at = -math.inf
        self.renders = 0

    async def text(self) -> bytes:
        async with self._lock:  # scrapes that arrive during a render wait for it and share it
            if time.monotonic() - self._rendered_at >= self.max_age_s:
                shared = await shared_state_families(self._store, self._memo, self._routing)
                self._text = await anyio.to_thread.run_sync(_render, self._metrics.registry, shared)
                self._rendered_at = time.monotonic()
                self.renders += 1
            return self._text


@get("/metrics", include_in_schema=False)
async def metrics_page(metrics_exposition: MetricsExposition | None) -> Response[bytes]:
    """The Prometheus exposition of this replica."""
    if metrics_exposition is None:
        raise NotFoundException(detail="metrics are off (BANDIT_METRICS=false)")
    return Response(await metrics_exposition.text(), media_type=TEXT_FORMAT)
