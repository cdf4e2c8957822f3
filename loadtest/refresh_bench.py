"""What a replica's background loops cost at 100 and 1,000 experiments: the snapshot refresh and the decision flush.

    python -m loadtest.refresh_bench [--experiments 100,1000] [--rounds 20]

In process, against a fresh redis-server and a fresh 3-primary Redis Cluster on free ports, with
the service's own SnapshotRegistry and DecisionRecorder. For each it prints the CPU time of this
process (the replica's side; Redis's own time is not in it) and the wall time per call of:

- the full refresh (`refresh_all`, every experiment re-read), which each process did every
  refresh interval (0.5 s) before, whatever its traffic;
- the due refresh (`refresh_due`) with every experiment idle, which is what the poll does now;
- the due refresh with every experiment serving here (each re-read at every poll);
- the flush with one decision pending in every experiment (the worst case: all serving at once).

The figure per second of the poll is the due refresh's CPU divided by the refresh interval.
The bench and Redis share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import msgspec
import numpy as np

from bandit.cli.local_cluster import LocalCluster
from bandit.cli.local_redis import start_redis
from bandit.core.models import ExperimentSpec
from bandit.store.redis_store import RedisStore
from proxy.clients.base import Timeouts
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry

REFRESH_INTERVAL_S = 0.5


async def _timed(rounds: int, call: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Mean (CPU ms, wall ms) of `call` over `rounds` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await call()
    return (time.process_time() - cpu) / rounds * 1000, (time.perf_counter() - wall) / rounds * 1000


async def measure(url: str, cluster: bool, count: int, rounds: int) -> dict[str, tuple[float, float]]:
    store = RedisStore.from_url(url, cluster=cluster)
    try:
        arms = [{"name": f"v{index}", "url": f"http://127.0.0.1:{9 + index}"} for index in range(3)]
        incarnations = {}
        for index in range(count):
            spec = msgspec.convert({"name": f"bench-{count}-{index}", "arms": arms}, ExperimentSpec)
            incarnations[spec.name] = (await store.experiments.create(spec, max_experiments=10_000)).incarnation
        registry = SnapshotRegistry(store.experiments, np.random.default_rng(1), REFRESH_INTERVAL_S, Timeouts(1, 1))
        recorder = DecisionRecorder(store.counters, 0.2, on_counted=registry.note_served)
        await registry.refresh_all()

        async def flush_one_each() -> None:
            for name, incarnation in incarnations.items():
                recorder.record(name, incarnation, "v0", 3.0, None)
            await recorder.flush()

        figures = {"refresh, every experiment (each poll, before)": await _timed(rounds, registry.refresh_all)}
        figures["refresh due, all idle (each poll, now)"] = await _timed(rounds, registry.refresh_due)
        figures["flush, one decision in each"] = await _timed(rounds, flush_one_each)
        figures["refresh due, all serving here"] = await _timed(rounds, registry.refresh_due)
        for name in incarnations:
            await store.experiments.delete(name)
        return figures
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default="100,1000")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    counts = [int(count) for count in args.experiments.split(",")]
    redis_process, redis_url = start_redis()
    cluster = LocalCluster(primaries=3).start()
    rows: list[tuple[str, int, str, float, float]] = []
    try:
        for backend, url, is_cluster in (("one Redis", redis_url, False), ("3-primary cluster", cluster.url, True)):
            for count in counts:
                for what, (cpu_ms, wall_ms) in asyncio.run(measure(url, is_cluster, count, args.rounds)).items():
                    rows.append((backend, count, what, cpu_ms, wall_ms))
                    print(f"{backend:18} {count:5} {what:46} {cpu_ms:8.2f} CPU ms {wall_ms:8.2f} wall ms", flush=True)
    finally:
        cluster.stop()
        redis_process.terminate()
        redis_process.wait(timeout=10)
    print(f"\n{os.cpu_count()} cores shared by this process and Redis; mean of {args.rounds} calls\n")
    print("| Redis | experiments | call | CPU ms per call | wall ms per call | CPU µs per experiment |")
    print("|---|---:|---|---:|---:|---:|")
    for backend, count, what, cpu_ms, wall_ms in rows:
        print(f"| {backend} | {count:,} | {what} | {cpu_ms:.2f} | {wall_ms:.2f} | {cpu_ms * 1000 / count:.1f} |")


if __name__ == "__main__":
    main()
