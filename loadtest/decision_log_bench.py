"""The decision log: Redis memory per logged decision, and how fast it exports.

    python -m loadtest.decision_log_bench [--decisions 100000] [--share 0.1]

Starts a redis-server of its own on a free port (so `used_memory` is this run's alone), signs
decision ids as the proxy does (`DecisionSigner`), and appends them through the recorder's path
(`DecisionLogStore.append`, batches of 500 as a flush sends them) with `--share` of them
rewarded through `append_rewards`. Prints the stream's bytes per decision (`MEMORY USAGE` of
the key and the change in `used_memory`), beside the two anchors this project already keeps
per decision: a seen-marker key (153 bytes, earlier releases) and a rewarded-bitmap bit
(0.25 bytes, BENCHMARKS.md, issue 12). Then exports every row as the endpoint does (read,
join by decision id, one JSON line each) and prints decisions/s and CPU µs per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import msgspec
from redis.asyncio import Redis

from bandit.api.decision_log import export_row
from bandit.cli.local_redis import start_redis
from bandit.core.decision_ids import DecisionSigner
from bandit.core.keyring import SigningKey
from bandit.core.models import DecisionLogSettings
from bandit.store import keys
from bandit.store.decision_log import DecisionLogStore, LoggedDecision

_encode = msgspec.json.Encoder().encode
FLUSH_BATCH = 500


async def measure(url: str, decisions: int, share: float) -> dict[str, float]:
    redis = Redis.from_url(url)
    log = DecisionLogStore(redis)
    settings = DecisionLogSettings(max_entries=10 * decisions)
    signer = DecisionSigner([SigningKey(b"k" * 32)])
    rng = random.Random(7)
    await redis.flushdb()
    before = int((await redis.info("memory"))["used_memory"])
    now_ms = time.time_ns() // 1_000_000
    ids = []
    for start in range(0, decisions, FLUSH_BATCH):
        batch = []
        for index in range(start, min(decisions, start + FLUSH_BATCH)):
            arm = f"v{1 + index % 3}"
            decision = signer.sign("checkout-ranker", arm, "a1b2c3d4", latency_us=1200)
            ids.append(decision)
            batch.append(LoggedDecision(decision, now_ms + index, arm, rng.random(), 3, f"user-{index % 5000}"))
        await log.append([("checkout-ranker", settings, batch)], now_ms)
    rewarded = [decision for decision in ids if rng.random() < share]
    for start in range(0, len(rewarded), FLUSH_BATCH):
        chunk = rewarded[start : start + FLUSH_BATCH]
        await log.append_rewards("checkout-ranker", settings, [(decision, 1.0) for decision in chunk])
    used = int((await redis.info("memory"))["used_memory"]) - before
    key_bytes = int(await redis.memory_usage(keys.decision_log("checkout-ranker"), samples=0) or 0)
    started, cpu = time.perf_counter(), time.process_time()
    lines = 0
    actions = {"v1": 0, "v2": 1, "v3": 2}
    async for rows in log.rows("checkout-ranker"):
        exported = b"".join(_encode(export_row(row, actions)) + b"\n" for row in rows)
        lines += exported.count(b"\n")
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    await redis.aclose()
    return {
        "decisions": decisions,
        "rewards": len(rewarded),
        "exported": lines,
        "key_bytes_per_decision": key_bytes / decisions,
        "used_memory_per_decision": used / decisions,
        "export_decisions_per_s": lines / wall,
        "export_cpu_us_per_decision": cpu_s / lines * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.1, help="share of decisions rewarded")
    args = parser.parse_args()
    process, url = start_redis()
    try:
        figures = asyncio.run(measure(url, args.decisions, args.share))
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"decision log: {figures['decisions']:,} decisions, {figures['rewards']:,} rewarded ({args.share:.0%})")
    print("machine: 2 cores shared by this script and its redis-server")
    print(f"  stream MEMORY USAGE    {figures['key_bytes_per_decision']:8.1f} bytes per decision")
    print(f"  used_memory growth     {figures['used_memory_per_decision']:8.1f} bytes per decision")
    print("  anchors: a seen-marker key 153 bytes per reward; a rewarded-bitmap bit 0.25 bytes per decision")
    print(
        f"  export: {figures['exported']:,} rows, {figures['export_decisions_per_s']:,.0f} decisions/s, "
        f"{figures['export_cpu_us_per_decision']:.1f} µs CPU per decision (read, join, JSON)"
    )


if __name__ == "__main__":
    main()
