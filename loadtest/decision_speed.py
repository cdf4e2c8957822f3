"""Cost of a decision per policy at 2, 10 and 100 arms, in process.

    python -m loadtest.decision_speed

For each policy kind: the amortised cost of one decision on the service's path
(`Snapshot.choose`, drawing vectorised batches), the cost of a lone `policy.choose(size=1)`,
the longest single `Snapshot.choose` call (the worst pause it puts on the event loop),
and the cost of rebuilding the snapshot after a refresh.
"""

from __future__ import annotations

import argparse
import time

import msgspec
import numpy as np

from bandit.core.models import Experiment
from bandit.store.counters import parse_counters
from proxy.clients.base import Timeouts
from proxy.snapshot import Snapshot

KINDS = ["thompson", "top_two_thompson", "ucb1", "epsilon_greedy", "softmax", "gradient", "static"]


def experiment(kind: str, arms: int) -> Experiment:
    body = {"name": "speed", "arms": [{"name": f"a{i}", "url": "http://127.0.0.1:1"} for i in range(arms)]}
    return msgspec.convert({**body, "policy": {"kind": kind}}, Experiment)


def stats_hash(arms: int, rng: np.random.Generator) -> dict[bytes, bytes]:
    """A counters hash as Redis holds it after 1,000 rewards per arm at rates around 5 %."""
    raw = {b"step": str(1000 * arms).encode()}
    for i in range(arms):
        successes = rng.binomial(1000, 0.05 + 0.0002 * i)
        for field, value in [("pn", 1000), ("ps", successes), ("pq", successes), ("pt", 1000 * arms)]:
            raw[f"{field}:a{i}".encode()] = str(value).encode()
        raw[f"h:a{i}".encode()] = str(rng.normal()).encode()
    return raw


def measure(kind: str, arms: int, decisions: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    config = experiment(kind, arms)
    counters = parse_counters(stats_hash(arms, rng), [arm.name for arm in config.arms])

    started = time.perf_counter()
    rebuilds = 20
    for _ in range(rebuilds):
        snapshot = Snapshot.build(config, counters, rng, Timeouts(connect_s=2.0, read_s=30.0))
    rebuild_ms = (time.perf_counter() - started) / rebuilds * 1e3

    worst = 0.0
    started = time.perf_counter()
    for _ in range(decisions):
        before = time.perf_counter()
        snapshot.choose()
        worst = max(worst, time.perf_counter() - before)
    amortised_us = (time.perf_counter() - started) / decisions * 1e6

    assert snapshot.policy is not None
    serving_stats = snapshot.statistics
    lone = 2000
    started = time.perf_counter()
    for _ in range(lone):
        snapshot.policy.choose(serving_stats, rng, 1)
    lone_us = (time.perf_counter() - started) / lone * 1e6
    return {"amortised": amortised_us, "lone": lone_us, "worst_ms": worst * 1e3, "rebuild_ms": rebuild_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=50_000)
    args = parser.parse_args()
    print("Decision cost in process (2-core machine, one core used; µs = microseconds)\n")
    print("| policy | arms | µs/decision (service path) | µs per lone choose(1) | worst call (ms) | rebuild (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        for arms in (2, 10, 100):
            figures = measure(kind, arms, args.decisions)
            print(
                f"| {kind} | {arms} | {figures['amortised']:.2f} | {figures['lone']:.1f} | "
                f"{figures['worst_ms']:.2f} | {figures['rebuild_ms']:.2f} |"
            )


if __name__ == "__main__":
    main()
