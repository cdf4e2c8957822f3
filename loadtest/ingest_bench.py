"""Batched feedback ingestion: rewards/s with 1, 2 and 4 service processes, on one Redis and on a cluster.

    python -m loadtest.ingest_bench [--rewards 200000] [--batch 500] [--processes 1,2,4]

For each Redis (a fresh redis-server, and a fresh 3-primary Redis Cluster, both on free ports)
and each process count, the bench starts `mab serve` with that many workers and a fixed secret,
creates `--experiments` Thompson experiments, signs every decision id itself beforehand (so
the timed part is only the service's: verify, deduplicate, count), and posts the rewards in
batches of `--batch`, each batch for one experiment, from `--clients` concurrent connections in
two load-generator processes. It prints rewards/s, the service's CPU µs per reward (user +
system of all its processes, from /proc), Redis's own (`INFO cpu` of every server, before and
after) and the ratio of the cluster to the single Redis.
Every reward must come back accepted: the figure counts only rewards the service acknowledged.
The load generator, the service and Redis share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import msgspec
import redis

from bandit.cli.local_cluster import LocalCluster
from bandit.cli.local_redis import free_port, start_redis
from bandit.core.decision_ids import DecisionSigner
from loadtest.processes import spawn, stop, tree_cpu_seconds, wait_http

TOKEN = "bench-admin-token"
SECRET = secrets.token_hex(16)
LOAD_PROCESSES = 2


@dataclass(frozen=True)
class Result:
    backend: str
    processes: int
    rewards: int
    accepted: int
    seconds: float
    cpu_s: float
    redis_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.accepted / self.seconds

    @property
    def cpu_us_per_reward(self) -> float:
        return self.cpu_s / max(self.accepted, 1) * 1e6

    @property
    def redis_cpu_us_per_reward(self) -> float:
        return self.redis_cpu_s / max(self.accepted, 1) * 1e6


def _redis_cpu_seconds(ports: list[int]) -> float:
    """User + system CPU the Redis servers on `ports` have used (INFO cpu; the main thread and its helpers)."""
    total = 0.0
    for port in ports:
        with redis.Redis(port=port) as client:
            info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


@contextmanager
def _service(redis_url: str, cluster: bool, processes: int, log: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        "BANDIT_REDIS_URL": redis_url,
        "BANDIT_PORT": str(port),
        "BANDIT_WORKERS": str(processes),
        "BANDIT_ADMIN_TOKEN": TOKEN,
        # Benches post rewards without a token, as a client of an open feedback API would.
        "BANDIT_FEEDBACK_OPEN": "true",
        "BANDIT_SECRET": SECRET,
        "BANDIT_LOG_LEVEL": "warning",
        "BANDIT_REDIS_CLUSTER": "true" if cluster else "",
    }
    process = spawn([sys.executable, "-m", "bandit", "serve"], log=log, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", process, "the service")
        yield url, process.pid
    finally:
        stop(process)


def _bodies(url: str, experiments: int, rewards: int, batch: int) -> list[bytes]:
    """Every batch's JSON, ids signed with the service's secret, created experiments' incarnations."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    arms = [{"name": f"v{index}", "url": f"http://127.0.0.1:{9 + index}"} for index in range(3)]
    incarnations = []
    for index in range(experiments):
        name = f"ingest-{index}"
        response = httpx.post(f"{url}/api/experiments", json={"name": name, "arms": arms}, headers=headers)
        response.raise_for_status()
        incarnations.append((name, response.json()["incarnation"]))
    signer = DecisionSigner([SECRET.encode()])
    encode = msgspec.json.Encoder().encode
    bodies = []
    for number in range(rewards // batch):
        name, incarnation = incarnations[number % experiments]
        items = [
            {"decision": signer.sign(name, f"v{position % 3}", incarnation), "reward": float(position % 2)}
            for position in range(batch)
        ]
        bodies.append(encode({"items": items}))
    return bodies


def _post_all(url: str, bodies: list[bytes], connections: int, results: multiprocessing.Queue[int]) -> None:
    async def run() -> int:
        queue = list(reversed(bodies))
        accepted = 0

        async def client(session: aiohttp.ClientSession) -> None:
            nonlocal accepted
            while queue:
                body = queue.pop()
                async with session.post(
                    "/feedback", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    answer = await response.json()
                    if response.status != 202:
                        raise RuntimeError(f"feedback answered {response.status}: {answer}")
                    accepted += answer["accepted"]

        async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(client(session) for _ in range(connections)))
        return accepted

    results.put(asyncio.run(run()))


def measure(
    backend: str, redis_url: str, ports: list[int], processes: int, args: argparse.Namespace, workdir: Path
) -> Result:
    with _service(redis_url, backend == "cluster", processes, workdir / f"{backend}-{processes}.log") as (url, pid):
        bodies = _bodies(url, args.experiments, args.rewards, args.batch)
        shares = [bodies[index::LOAD_PROCESSES] for index in range(LOAD_PROCESSES)]
        results: multiprocessing.Queue[int] = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=_post_all, args=(url, share, args.clients // LOAD_PROCESSES, results))
            for share in shares
        ]
        cpu_before, redis_before = tree_cpu_seconds(pid), _redis_cpu_seconds(ports)
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        accepted = sum(results.get(timeout=600) for _ in workers)
        seconds = time.perf_counter() - started
        cpu = tree_cpu_seconds(pid) - cpu_before
        redis_cpu = _redis_cpu_seconds(ports) - redis_before
        for worker in workers:
            worker.join()
    return Result(backend, processes, len(bodies) * args.batch, accepted, seconds, cpu, redis_cpu)


@contextmanager
def _redis(backend: str) -> Iterator[tuple[str, list[int]]]:
    """A fresh Redis or 3-primary cluster: its URL, and the ports of all its servers."""
    if backend == "redis":
        process, url = start_redis()
        try:
            yield url, [int(url.rsplit(":", 1)[1].split("/")[0])]
        finally:
            process.terminate()
            process.wait(timeout=10)
    else:
        cluster = LocalCluster(primaries=3).start()
        try:
            yield cluster.url, cluster.ports
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewards", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--experiments", type=int, default=12)
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections in all")
    parser.add_argument("--processes", default="1,2,4", help="service processes (workers) to try")
    parser.add_argument("--backends", default="redis,cluster")
    args = parser.parse_args(argv)
    counts = [int(count) for count in args.processes.split(",")]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mab-ingest-bench-") as temp:
        for backend in args.backends.split(","):
            for processes in counts:
                with _redis(backend) as (url, ports):  # a fresh Redis per run: no run pays for the last one's keys
                    result = measure(backend, url, ports, processes, args, Path(temp))
                results.append(result)
                print(
                    f"{backend:8} {processes} process(es): {result.per_second:9,.0f} rewards/s, "
                    f"{result.cpu_us_per_reward:6.1f} CPU µs/reward (service), "
                    f"{result.redis_cpu_us_per_reward:5.1f} (Redis), "
                    f"{result.accepted:,}/{result.rewards:,} accepted",
                    flush=True,
                )
    print(f"\n{os.cpu_count()} cores shared by the load generator ({LOAD_PROCESSES} processes), the service and Redis")
    print(f"batches of {args.batch}, {args.experiments} experiments, {args.clients} connections\n")
    print(
        "| service processes | one Redis: rewards/s | CPU µs/reward: service, Redis "
        "| 3-primary cluster: rewards/s | CPU µs/reward: service, Redis | cluster ÷ one Redis |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    by_key = {(result.backend, result.processes): result for result in results}
    for processes in counts:
        single, cluster = by_key.get(("redis", processes)), by_key.get(("cluster", processes))
        cells = []
        for measured in (single, cluster):
            cells += (
                [
                    f"{measured.per_second:,.0f}",
                    f"{measured.cpu_us_per_reward:.1f}, {measured.redis_cpu_us_per_reward:.1f}",
                ]
                if measured
                else ["-", "-"]
            )
        ratio = f"{cluster.per_second / single.per_second:.2f}" if single and cluster else "-"
        print(f"| {processes} | {' | '.join(cells)} | {ratio} |")


if __name__ == "__main__":
    main()
