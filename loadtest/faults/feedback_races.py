"""The same rewards posted concurrently, again and again, through every process of two replicas.

`tests/test_end_to_end.py` posts each reward 3 times through one single-worker process.
Here the copies race across processes: two replicas share Redis, one with 2 workers,
and the three copies of a reward are sent at about the same moment by different
clients, each client holding its own connection to one replica (so to one worker). The
counts must come out exact: one reward per decision, sums to the last bit (rewards are
multiples of 1/4), every decision counted once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bandit.cli.local_redis import free_port
from loadtest.faults.books import Books, reconcile
from loadtest.faults.load import Ledger
from loadtest.faults.report import Row
from loadtest.faults.rig import ModelProcess, Service, log_dir, running_service
from loadtest.faults.workers import owner_of_connection
from loadtest.traffic import run_traffic

#: Copies of every reward; each goes out in a different batch, at about the same time.
COPIES = 3
BATCH_SIZES = (1, 1, 7, 40)


@dataclass
class Answers:
    """What the feedback endpoint answered, summed over every post."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    posts: int = 0
    not_202: Counter[int] = field(default_factory=Counter)
    # Feedback posts handled by each service process (pid), from the server end of each connection.
    by_process: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class FeedbackRaces:
    answers: Answers
    books: Books
    decisions: int
    clients: int
    seconds: float
    command: str

    def row(self) -> Row:
        answers = self.answers
        return Row(
            scenario="Duplicates and races",
            load=f"{answers.posts / self.seconds:.0f} feedback posts/s ({COPIES} copies of each of "
            f"{self.decisions} rewards, batches of {'/'.join(map(str, BATCH_SIZES))}), {self.clients} clients",
            faults=f"every reward raced {COPIES}× across 2 replicas (2 + 1 workers) sharing Redis",
            requests=answers.posts,
            failed=sum(answers.not_202.values()),
            rewards_acknowledged=answers.accepted + answers.duplicate,
            rewards_lost=self.books.rewards_lost,
            decisions_lost=self.books.decisions_lost,
            decisions_bound=0,
            command=self.command,
            notes=f"accepted {answers.accepted}, duplicate {answers.duplicate}, rejected {answers.rejected}; "
            f"handled by {len(answers.by_process)} processes; double counts {self.books.rewards_extra}",
        )


def run_feedback_races(
    redis_url: str,
    decisions: int = 1500,
    clients: int = 32,
    seed: int = 11,
    command: str = "python -m loadtest.faults --only races",
) -> FeedbackRaces:
    """Make `decisions` decisions through both replicas, then race COPIES of each reward."""
    name = f"races-{int(time.time() * 1000) % 10**9}"
    models = ModelProcess(["v1:0.3", "v2:0.5", "v3:0.7"])
    rng = random.Random(seed)
    with (
        models.running(),
        running_service(redis_url, log_dir() / f"{name}-a.log", workers=2) as replica_a,
        running_service(redis_url, log_dir() / f"{name}-b.log", workers=1) as replica_b,
    ):
        replica_a.create({"name": name, "arms": [{"name": n, "url": u} for n, u in models.urls.items()]})
        replicas = [replica_a, replica_b]
        ledger = Ledger()
        for replica in replicas:
            tally = asyncio.run(run_traffic(replica.url, name, decisions // 2, concurrency=8, send_feedback=False))
            ledger.served.update(tally.decisions)
            for decision, arm, _ in tally.outcomes:
                # Multiples of 1/4, so every sum is exact in floating point.
                ledger.acknowledged[decision] = (arm, rng.choice([0.0, 0.25, 0.5, 1.0]))
        started = time.monotonic()
        answers = asyncio.run(_race(replicas, _racing_batches(ledger, rng), clients))
        seconds = time.monotonic() - started
        books = reconcile(replica_a, name, ledger)
    return FeedbackRaces(answers, books, len(ledger.acknowledged), clients, seconds, command)


def _racing_batches(ledger: Ledger, rng: random.Random) -> list[list[tuple[str, float]]]:
    """COPIES chunkings of one shuffled order of the rewards, interleaved: copy k of a reward sits
    in the k-th of neighbouring batches, so concurrent clients take the copies at the same time."""
    rewards = [(decision, reward) for decision, (_, reward) in ledger.acknowledged.items()]
    rng.shuffle(rewards)
    chunkings = []
    for _ in range(COPIES):
        chunks, position = [], 0
        while position < len(rewards):
            size = rng.choice(BATCH_SIZES)
            chunks.append(rewards[position : position + size])
            position += size
        chunkings.append(chunks)
    batches = []
    for index in range(max(len(chunks) for chunks in chunkings)):
        batches += [chunks[index] for chunks in chunkings if index < len(chunks)]
    return batches


async def _race(replicas: list[Service], batches: list[list[tuple[str, float]]], clients: int) -> Answers:
    answers = Answers()
    queue: asyncio.Queue[list[tuple[str, float]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    # Each client is held to one worker process, round robin over every worker of both replicas:
    # left to the kernel, most connections to a replica can land on one of its workers.
    targets = [(replica, pid) for replica in replicas for pid in replica.workers()]

    async def client(replica: Service, pid: int) -> None:
        async with await _session_on(replica, pid) as session:
            while not queue.empty():
                batch = queue.get_nowait()
                body: dict[str, Any] = (
                    {"decision": batch[0][0], "reward": batch[0][1]}
                    if len(batch) == 1
                    else {"items": [{"decision": d, "reward": r} for d, r in batch]}
                )
                async with session.post("/feedback", json=body) as answer:
                    answers.posts += 1
                    answers.by_process[pid] += 1
                    if answer.status != 202:
                        answers.not_202[answer.status] += 1
                        continue
                    result = await answer.json()
                answers.accepted += result["accepted"]
                answers.duplicate += result["duplicate"]
                answers.rejected += result["rejected"]

    await asyncio.gather(*(client(*targets[i % len(targets)]) for i in range(clients)))
    return answers


async def _session_on(replica: Service, pid: int, attempts: int = 200) -> aiohttp.ClientSession:
    """A session whose one kept-alive connection is served by worker `pid` of `replica`."""
    for _ in range(attempts):
        # Bound to a known local port, so the server end of the connection can be found in /proc.
        local_port = free_port()
        connector = aiohttp.TCPConnector(limit=1, local_addr=("127.0.0.1", local_port))
        session = aiohttp.ClientSession(replica.url, connector=connector)
        async with session.get("/healthz") as answer:
            await answer.read()
        if owner_of_connection(replica.port, local_port, replica.workers()) == pid:
            return session
        await session.close()
    raise TimeoutError(f"{attempts} connections to {replica.url} never reached worker {pid}")
