"""What an idle replica costs as the number of experiments grows: CPU and the dashboard overview's latency.

    python -m loadtest.idle_bench [--counts 10,100,1000] [--seconds 20] [--service-root /tmp/before]

For each count: Redis db `--db` is flushed, one `mab serve` process (1 worker) is started, that
many experiments are created through the API (3 arms, Thompson), and counters and latencies are
written into Redis (so the stats are not trivial: P(best), intervals and allocation all
computed). After `--settle` seconds (plus `--settle-per-experiment` per experiment: a fresh
replica computes each experiment's stats once), the CPU (user + system, from /proc/<pid>/stat of the
service and every descendant) over `--seconds` of idleness is reported as % of one core, then
the median and max of `--gets` GETs of /dashboard/data/overview.

`--service-root DIR` also runs, side by side, the service from another checkout (e.g. the code
before a change: `git worktree add /tmp/before <commit>`), with this checkout's interpreter.
The machine's cores are shared by the service, Redis and this script.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis

from bandit.cli.local_redis import free_port
from bandit.store import keys
from loadtest.processes import spawn, stop, tree_cpu_seconds, wait_http

ARMS = ("a", "b", "c")
#: Figures of the issue (12) for the code before it, at 10, 100 and 500 experiments.
ISSUE_ANCHORS = {10: ("2 %", "10 ms"), 100: ("15 %", "58 ms"), 500: ("79 %", "2.8 s")}
TOKEN = "idle-bench-token"


def seed_counters(client: redis.Redis, names: list[str]) -> None:
    """Decisions, rewards and latencies per arm, as if traffic had flowed: nontrivial stats."""
    with client.pipeline(transaction=False) as pipe:
        for index, name in enumerate(names):
            fields: dict[str, float] = {}
            latencies: dict[str, int] = {}
            for k, arm in enumerate(ARMS):
                pulls = 200 + 37 * k + index % 50
                wins = int(pulls * (0.04 + 0.02 * k))
                fields |= {
                    keys.decisions_field(arm): pulls,
                    keys.rewards_field(arm): pulls,
                    keys.reward_sum_field(arm): wins,
                    keys.reward_sq_field(arm): wins,
                }
                latencies |= {keys.latency_field(arm, bucket): 5 + bucket for bucket in (10, 14, 20)}
            pipe.hset(keys.counters_hash(name), mapping=fields)  # type: ignore[arg-type]
            pipe.hset(keys.latency_histogram(name), mapping=latencies)  # type: ignore[arg-type]
        pipe.execute()


def measure(root: Path, redis_url: str, count: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """(CPU % of a core while idle, overview median ms, overview max ms) for one service at `count`."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    port = free_port()
    env = {
        "BANDIT_REDIS_URL": redis_url,
        "BANDIT_ADMIN_TOKEN": TOKEN,
        "BANDIT_SECRET": secrets.token_urlsafe(16),
        "BANDIT_PORT": str(port),
        "BANDIT_LOG_LEVEL": "warning",
        "BANDIT_MAX_EXPERIMENTS": str(max(1000, count)),
        "PYTHONPATH": str(root),
    }
    base = f"http://127.0.0.1:{port}"
    names = [f"idle-{index:04d}" for index in range(count)]
    with ExitStack() as stack:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"idle-bench-{port}.log"
        service = spawn([sys.executable, "-m", "bandit", "serve"], log=log, env=env | {"PWD": str(root)})
        stack.callback(stop, service)
        wait_http(f"{base}/readyz", service, "the service")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as api:
            for name in names:
                body = {
                    "name": name,
                    "arms": [{"name": arm, "url": f"http://127.0.0.1:9/{arm}"} for arm in ARMS],
                    "policy": {"kind": "thompson"},
                }
                api.post("/api/experiments", json=body).raise_for_status()
            seed_counters(client, names)
            time.sleep(args.settle + args.settle_per_experiment * count)
            before, started = tree_cpu_seconds(service.pid), time.monotonic()
            time.sleep(args.seconds)
            cpu = 100 * (tree_cpu_seconds(service.pid) - before) / (time.monotonic() - started)
            latencies = []
            for _ in range(args.gets):
                sent = time.perf_counter()
                overview = api.get("/dashboard/data/overview")
                latencies.append(1000 * (time.perf_counter() - sent))
                overview.raise_for_status()
                assert len(overview.json()) == count, "the overview does not list every experiment"
    client.flushdb()
    client.close()
    return cpu, statistics.median(latencies), max(latencies)


def _cwd_runs(root: Path) -> None:
    """`python -m bandit` imports from the working directory: run each service from its own root."""
    os.chdir(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="10,100,1000", help="experiment counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="idle seconds measured")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after seeding before measuring")
    parser.add_argument(
        "--settle-per-experiment",
        type=float,
        default=0.03,
        help="more settling per experiment: a fresh replica computes every experiment's stats once (~20 ms each)",
    )
    parser.add_argument("--gets", type=int, default=10, help="overview GETs timed")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis, without a db")
    parser.add_argument("--db", type=int, default=12, help="the db this benchmark owns and flushes")
    parser.add_argument("--service-root", type=Path, help="another checkout to measure beside this one")
    args = parser.parse_args()
    redis_url = f"{args.redis.rstrip('/')}/{args.db}"
    here = Path(__file__).resolve().parent.parent
    roots = {"this checkout": here}
    if args.service_root is not None:
        roots = {"before (--service-root)": args.service_root.resolve(), **roots}
    counts = [int(c) for c in args.counts.split(",")]
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    for count in counts:
        for label, root in roots.items():
            _cwd_runs(root)
            results[label, count] = measure(root, redis_url, count, args)
            cpu, median, worst = results[label, count]
            print(f"{label}, {count} experiments: CPU {cpu:.1f} %, overview {median:.0f} / {worst:.0f} ms", flush=True)
    os.chdir(here)
    print()
    header = "| experiments | issue's before: CPU, overview |"
    header += "".join(f" {label}: idle CPU | {label}: overview median / max |" for label in roots)
    print(header)
    print("|---:|---|" + "---:|---:|" * len(roots))
    for count in counts:
        cpu_anchor, overview_anchor = ISSUE_ANCHORS.get(count, ("n/a", "n/a"))
        row = f"| {count:,} | {cpu_anchor}, {overview_anchor} |"
        for label in roots:
            cpu, median, worst = results[label, count]
            row += f" {cpu:.1f} % | {median:.0f} / {worst:.0f} ms |"
        print(row)


if __name__ == "__main__":
    main()
