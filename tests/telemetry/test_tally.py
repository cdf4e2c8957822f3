"""The proxy's requests, counted in a ServedTally and added per flush, give the metrics that
prometheus-client's own per-request calls would give."""

from __future__ import annotations

import random

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bandit.telemetry.metrics import DURATION_BUCKETS_S, ServedTally, ServiceMetrics


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_a_tally_published_in_pieces_equals_one_observation_per_request() -> None:
    rng = random.Random(7)
    # Every bound exactly (a value on a bound belongs to it), either side of each, and past the last.
    durations = [*DURATION_BUCKETS_S, *(b * 1.0001 for b in DURATION_BUCKETS_S), 0.0, 120.0]
    durations += [rng.expovariate(1 / 0.05) for _ in range(2_000)]
    requests = [
        (rng.choice(["exp-a", "exp-b"]), rng.choice(["v1", "v2"]), duration, rng.choice([None, None, "http_5xx"]))
        for duration in durations
    ]
    requests += [("exp-a", "v1", None, "connect")] * 5  # refused connections have no duration

    tallied, observed = ServiceMetrics(), ServiceMetrics()
    tally = ServedTally(tallied)
    for index, (experiment, arm, duration, failure) in enumerate(requests):
        tally.count(experiment, arm, duration, failure)
        if index % 700 == 0:
            tally.publish()  # flushes fall anywhere
        if failure is None:
            observed.decisions.labels(experiment, arm).inc()
        else:
            observed.upstream_errors.labels(experiment, arm, failure).inc()
        if duration is not None:
            observed.upstream_duration.labels(experiment, arm).observe(duration)
    tally.publish()

    got, want = samples(tallied), samples(observed)
    assert set(got) == set(want)
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
    assert want[("mab_upstream_errors_total", (("arm", "v1"), ("experiment", "exp-a"), ("kind", "connect")))] == 5
