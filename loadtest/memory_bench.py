"""Redis memory per acknowledged reward: seen-marker keys (random nonces) against bitmaps (sequences).

    python -m loadtest.memory_bench --redis-url redis://127.0.0.1:6379/13 [--rewards 100000]
    python -m loadtest.memory_bench --own-redis     # a redis-server of its own: used_memory is this run's alone
    python -m loadtest.memory_bench --cluster       # a 3-primary Redis Cluster of its own

Runs the real feedback path in process: ids signed by `DecisionSigner`, verified and counted by
`bandit.api.ingest.ingest` through `CounterStore.record_feedback` and record_feedback.lua, in
batches of `--batch` items. Each scenario starts from a flushed database (THE DATABASE AT
--redis-url IS FLUSHED) holding one experiment, and reads `INFO memory` used_memory before and
after its rewards:

- before: ids with a random 16-hex nonce, as earlier releases signed (`sequenced=False`): one
  `mab:{exp}:seen:<marker>` key per reward;
- after: ids with `<issuer>-<sequence>`: one bit per decision in `mab:{exp}:rewarded:<issuer>:<block>`;

each with every decision rewarded (bytes per acknowledged reward) and with only `--share` of
them rewarded, in random order (bytes per *issued* decision: a bitmap's size follows the
highest sequence rewarded, not the number of rewards).

`measure()` takes a `Target` (the store and how to read its memory and flush it), so a cluster
run only needs a Target whose `used_memory` sums over the primaries.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis, RedisCluster

from bandit.api.ingest import ingest
from bandit.cli.local_cluster import LocalCluster
from bandit.cli.local_redis import start_redis
from bandit.core.decision_ids import DecisionSigner
from bandit.core.models import Experiment, ExperimentSpec
from bandit.core.payloads import FeedbackItem
from bandit.store.redis_store import RedisStore

EXPERIMENT = "memory-bench"
SECRET = b"memory-bench-secret"


@dataclass
class Target:
    """Where the scenario runs: the stores, the memory Redis reports, and a way to empty it."""

    store: RedisStore
    used_memory: Callable[[], Awaitable[int]]
    flush: Callable[[], Awaitable[None]]
    # How many keys match a pattern, and the sum of their MEMORY USAGE (SCAN; on a cluster,
    # over every primary).
    key_memory: Callable[[str], Awaitable[tuple[int, int]]]
    label: str


@dataclass(frozen=True)
class Result:
    scenario: str
    issued: int
    rewarded: int
    keys_after: int
    # INFO memory used_memory (less client buffers) after minus before: everything the rewards
    # cost the server (noisy by ~100 kB when other clients use the same Redis meanwhile).
    used_bytes: int
    # MEMORY USAGE of the experiment's keys after minus before: exact for these keys, blind to
    # the server's own tables (the expiry dict).
    key_bytes: int

    @property
    def per_reward(self) -> float:
        return self.used_bytes / self.rewarded

    @property
    def per_issued(self) -> float:
        return self.used_bytes / self.issued

    @property
    def key_per_reward(self) -> float:
        return self.key_bytes / self.rewarded

    @property
    def key_per_issued(self) -> float:
        return self.key_bytes / self.issued


def single_redis(url: str) -> Target:
    client = Redis.from_url(url)

    async def used_memory() -> int:
        return server_memory(await client.info("memory"))

    async def flush() -> None:
        await client.flushdb()

    async def key_memory(pattern: str) -> tuple[int, int]:
        return await keys_memory(client, pattern)

    return Target(RedisStore(client), used_memory, flush, key_memory, f"single Redis at {url}")


def cluster_target(cluster: LocalCluster) -> Target:
    """The 3 primaries of a Redis Cluster: memory summed over them (the experiment's slot is on one)."""
    client = RedisCluster.from_url(cluster.url)
    nodes = [Redis(port=port) for port in cluster.primary_ports()]

    async def used_memory() -> int:
        return sum([server_memory(await node.info("memory")) for node in nodes])

    async def flush() -> None:
        for node in nodes:
            await node.flushall()

    async def key_memory(pattern: str) -> tuple[int, int]:
        found, total = 0, 0
        for node in nodes:
            count, usage = await keys_memory(node, pattern)
            found, total = found + count, total + usage
        return found, total

    return Target(RedisStore(client), used_memory, flush, key_memory, f"3-primary Redis Cluster at {cluster.url}")


def server_memory(info: dict[str, object]) -> int:
    """INFO memory used_memory less the clients' buffers (mem_clients_normal, _slaves).

    A connection's query buffer grows with a batch's command and is trimmed only seconds after,
    which would move used_memory by ~100 kB either way; the keys and Redis's own tables stay in.
    """
    return int(str(info["used_memory"])) - int(str(info["mem_clients_normal"])) - int(str(info["mem_clients_slaves"]))


async def keys_memory(client: Redis, pattern: str) -> tuple[int, int]:
    """(keys matching `pattern`, the sum of their MEMORY USAGE ... SAMPLES 0) on one node."""
    found = [key async for key in client.scan_iter(match=pattern, count=10_000)]
    total = 0
    for start in range(0, len(found), 1000):
        async with client.pipeline(transaction=False) as pipe:
            for key in found[start : start + 1000]:
                pipe.memory_usage(key, samples=0)
            total += sum(int(usage or 0) for usage in await pipe.execute())
    return len(found), total


async def _settled_memory(target: Target) -> int:
    """used_memory once the allocator and Redis's lazy work have had a moment."""
    await asyncio.sleep(0.2)
    return await target.used_memory()


async def measure(
    target: Target,
    scenario: str,
    *,
    sequenced: bool,
    issued: int,
    share: float,
    batch: int,
    issuers: int = 1,
    seed: int = 1,
) -> Result:
    """Memory the rewards of `share` of `issued` decisions add to Redis, through ingest()."""
    await target.flush()
    spec = msgspec.convert(
        {
            "name": EXPERIMENT,
            "arms": [{"name": "a", "url": "http://127.0.0.1:9/"}, {"name": "b", "url": "http://127.0.0.1:9/"}],
            "reward": {"window_s": 86_400},
        },
        ExperimentSpec,
    )
    experiment = await target.store.experiments.create(spec)

    async def find_experiment(name: str) -> Experiment:
        # What the replica's snapshot answers: no Redis read per item.
        return experiment if name == experiment.name else warm

    # Workers of the service: each its own issuer, decisions dealt round-robin.
    signers = [DecisionSigner([SECRET], sequenced=sequenced) for _ in range(issuers)]
    verifier = signers[0]
    ids = [signers[i % issuers].sign(EXPERIMENT, "a" if i % 2 else "b", experiment.incarnation) for i in range(issued)]
    rewarded = ids if share >= 1 else random.Random(seed).sample(ids, round(issued * share))

    # Warm up (script loaded, connections open) on another experiment, so that only the
    # rewards below are in the difference.
    warm_signer = DecisionSigner([SECRET], sequenced=sequenced)
    warm_spec = msgspec.structs.replace(spec, name=f"{EXPERIMENT}-warm")
    warm = await target.store.experiments.create(warm_spec)
    warm_items = [
        FeedbackItem(decision=warm_signer.sign(warm.name, "a", warm.incarnation), reward=1.0) for _ in range(batch)
    ]
    await ingest(warm_items, verifier, target.store.counters, find_experiment)

    pattern = f"mab:{{{EXPERIMENT}}}:*"
    _count, keys_before = await target.key_memory(pattern)
    before = await _settled_memory(target)
    accepted = 0
    for start in range(0, len(rewarded), batch):
        items = [FeedbackItem(decision=d, reward=1.0) for d in rewarded[start : start + batch]]
        result = await ingest(items, verifier, target.store.counters, find_experiment)
        accepted += result.accepted
    after = await _settled_memory(target)
    if accepted != len(rewarded):
        raise RuntimeError(f"{scenario}: {accepted} of {len(rewarded)} rewards accepted")
    # Exactly once still: a second pass counts nothing.
    again = await ingest(
        [FeedbackItem(decision=d, reward=1.0) for d in rewarded[:batch]],
        verifier,
        target.store.counters,
        find_experiment,
    )
    if again.accepted:
        raise RuntimeError(f"{scenario}: {again.accepted} duplicates counted")
    counted = await target.store.counters.read(EXPERIMENT, ["a", "b"])
    if int(counted.rewards.sum()) != len(rewarded):
        raise RuntimeError(f"{scenario}: counters hold {counted.rewards.sum()} rewards, not {len(rewarded)}")
    keys_after, key_bytes = await target.key_memory(pattern)
    return Result(scenario, issued, len(rewarded), keys_after, after - before, key_bytes - keys_before)


async def run(target: Target, rewards: int, share: float, batch: int, issuers: int) -> list[Result]:
    partial = round(rewards / share)
    scenarios = [
        ("before: random nonce, seen-marker per reward", False, rewards, 1.0),
        ("after: issuer + sequence, bit per decision", True, rewards, 1.0),
        (f"before: {share:.0%} of decisions rewarded", False, partial, share),
        (f"after: {share:.0%} of decisions rewarded", True, partial, share),
    ]
    results = []
    for scenario, sequenced, issued, portion in scenarios:
        started = time.perf_counter()
        result = await measure(
            target, scenario, sequenced=sequenced, issued=issued, share=portion, batch=batch, issuers=issuers
        )
        print(f"  {scenario}: {time.perf_counter() - started:.1f} s", flush=True)
        results.append(result)
    await target.flush()
    return results


def report(target: Target, results: list[Result], batch: int, issuers: int) -> None:
    print(f"\n{target.label}; batches of {batch}; {issuers} issuer(s)\n")
    print(
        "| scenario | issued | rewarded | keys after | Δ used_memory − clients (B) | B / reward | B / issued decision "
        "| Δ keys' MEMORY USAGE (B) | B / reward | B / issued decision |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.scenario} | {r.issued:,} | {r.rewarded:,} | {r.keys_after:,} | {r.used_bytes:,} "
            f"| {r.per_reward:.2f} | {r.per_issued:.3f} | {r.key_bytes:,} | {r.key_per_reward:.2f} "
            f"| {r.key_per_issued:.3f} |"
        )
    full_before, full_after, part_before, part_after = results
    share = part_after.rewarded / part_after.issued
    print(
        f"\nper acknowledged reward (used_memory): {full_before.per_reward:.1f} → {full_after.per_reward:.2f} B"
        f" ({_ratio(full_before.per_reward, full_after.per_reward)});"
        f" keys' MEMORY USAGE: {full_before.key_per_reward:.1f} → {full_after.key_per_reward:.2f} B"
        f" ({_ratio(full_before.key_per_reward, full_after.key_per_reward)})"
    )
    print(
        f"per issued decision, {share:.0%} rewarded (used_memory): {part_before.per_issued:.2f} → "
        f"{part_after.per_issued:.3f} B ({_ratio(part_before.per_issued, part_after.per_issued)});"
        f" keys' MEMORY USAGE: {part_before.key_per_issued:.2f} → {part_after.key_per_issued:.3f} B"
        f" ({_ratio(part_before.key_per_issued, part_after.key_per_issued)})"
    )


def _ratio(before: float, after: float) -> str:
    return f"{before / after:,.0f}× less" if after > 0 else "after within the noise of used_memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="its database is FLUSHED")
    parser.add_argument(
        "--own-redis",
        action="store_true",
        help="start a redis-server of its own on a free port instead (used_memory then counts this run alone)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="on a 3-primary Redis Cluster of its own (started on free ports)"
    )
    parser.add_argument("--rewards", type=int, default=100_000, help="rewards per scenario (default 100,000)")
    parser.add_argument("--share", type=float, default=0.1, help="share of decisions rewarded in the partial runs")
    parser.add_argument("--batch", type=int, default=500, help="feedback items per ingest call")
    parser.add_argument("--issuers", type=int, default=1, help="signers (worker processes) the decisions come from")
    args = parser.parse_args()
    if not 0 < args.share <= 1:
        parser.error("--share must be in (0, 1]")
    process = None
    cluster = LocalCluster(primaries=3).start() if args.cluster else None
    url = args.redis_url
    if args.own_redis:
        process, url = start_redis()

    async def go() -> None:
        target = cluster_target(cluster) if cluster is not None else single_redis(url)
        try:
            results = await run(target, args.rewards, args.share, args.batch, args.issuers)
            report(target, results, args.batch, args.issuers)
        finally:
            await target.store.close()

    try:
        asyncio.run(go())
    finally:
        if cluster is not None:
            cluster.stop()
        if process is not None:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
