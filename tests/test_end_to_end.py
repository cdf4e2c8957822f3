"""The whole loop through a running service: learning, and rewards counted exactly once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from loadtest.traffic import run_traffic
from tests.conftest import Backend, experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until


@pytest.fixture(scope="module")
def clear_models() -> Iterator[ModelServers]:
    """Rates 0.04 / 0.05 / 0.12: a gap that 5,000 invokes resolve every time, not 99 times in 100.

    Against the shared 0.04 / 0.05 / 0.07, Thompson sampling (what the service runs by
    default) locks onto v2 for the whole run in about 1 % of runs: in-process, over 2,000
    seeds, v3 served under half of the last 1,000 in 1.0 % of them. That is the policy's
    tail, not a fault, and it turned CI red once.
    """
    servers = ModelServers(["v1:0.04", "v2:0.05", "v3:0.12"])
    yield servers
    servers.stop()


def test_traffic_shifts_to_the_best_model(
    backend_service: ServiceProcess, clear_models: ModelServers, backend_admin: httpx.Client, name: str
) -> None:
    """Rates 0.04 / 0.05 / 0.12: after 5,000 invokes with feedback, v3 serves the clear majority
    (on a single Redis and on a Redis Cluster)."""
    service, admin = backend_service, backend_admin
    admin.post("/api/experiments", json=experiment_body(name, clear_models)).raise_for_status()
    tally = asyncio.run(run_traffic(service.url, name, requests=5000, concurrency=16))
    assert tally.failed == 0 and tally.feedback_failed == 0, tally.failures.most_common(5)
    last = Counter(tally.recent_arms)
    share_of_best = last["v3"] / sum(last.values())
    # In-process Thompson sampling on these rates gives v3 99 % of the last 1,000 (median),
    # and at least 91 % in every one of 4,000 seeds; a policy that ignored rewards gives ~33 %.
    assert share_of_best > 0.5, f"v3 served {share_of_best:.0%} of the last 1,000: {dict(last)}"

    wait_until(
        lambda: admin.get(f"/api/experiments/{name}/stats").json()["totals"]["decisions"] == 5000,
        5,
        "all decisions flushed",
    )
    stats = admin.get(f"/api/experiments/{name}/stats").json()
    assert stats["leader"] == "v3"
    by_arm = {arm["name"]: arm for arm in stats["arms"]}
    for arm, count in tally.decisions.items():
        assert by_arm[arm]["decisions"] == count
        assert by_arm[arm]["rewards"] == tally.rewards[arm]


def test_each_reward_counts_exactly_once_however_often_it_is_sent(
    backend_service: ServiceProcess, models: ModelServers, backend_admin: httpx.Client, name: str
) -> None:
    """Every decision's reward posted 3 times, concurrently, from 32 clients, single and batched
    (on a single Redis and on a Redis Cluster)."""
    service, admin = backend_service, backend_admin
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    tally = asyncio.run(run_traffic(service.url, name, requests=1500, concurrency=16, send_feedback=False))
    rng = random.Random(11)
    # Rewards are multiples of 1/4 so every sum is exact in floating point.
    rewards = [(decision, arm, rng.choice([0.0, 0.25, 0.5, 1.0])) for decision, arm, _ in tally.outcomes]
    posts = [item for item in rewards for _ in range(3)]
    rng.shuffle(posts)

    async def send_all() -> Counter[str]:
        answers: Counter[str] = Counter()
        queue: asyncio.Queue[list[tuple[str, str, float]]] = asyncio.Queue()
        position = 0
        while position < len(posts):
            size = rng.choice([1, 1, 7, 40])
            queue.put_nowait(posts[position : position + size])
            position += size

        async def client(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                chunk = queue.get_nowait()
                body = (
                    {"decision": chunk[0][0], "reward": chunk[0][2]}
                    if len(chunk) == 1
                    else {"items": [{"decision": d, "reward": r} for d, _, r in chunk]}
                )
                async with session.post("/feedback", json=body) as response:
                    assert response.status == 202, await response.text()
                    result = await response.json()
                    answers["accepted"] += result["accepted"]
                    answers["duplicate"] += result["duplicate"]
                    answers["rejected"] += result["rejected"]

        async with aiohttp.ClientSession(service.url) as session:
            await asyncio.gather(*(client(session) for _ in range(32)))
        return answers

    answers = asyncio.run(send_all())
    assert answers == Counter({"accepted": 1500, "duplicate": 3000})
    expected_count: Counter[str] = Counter(arm for _, arm, _ in rewards)
    expected_sum: Counter[str] = Counter()
    for _, arm, reward in rewards:
        expected_sum[arm] += reward
    stats = admin.get(f"/api/experiments/{name}/stats").json()
    for arm in stats["arms"]:
        assert arm["rewards"] == expected_count[arm["name"]]
        assert arm["reward_sum"] == expected_sum[arm["name"]]


def test_two_workers_share_only_redis_and_agree_on_every_count(
    backend: Backend, models: ModelServers, name: str
) -> None:
    """Decisions flushed by two processes and feedback verified by either add up exactly."""
    service = ServiceProcess(backend.url, BANDIT_WORKERS="2", **backend.settings).start()
    try:
        admin = {"Authorization": "Bearer test-admin-token"}
        httpx.post(
            f"{service.url}/api/experiments", json=experiment_body(name, models), headers=admin
        ).raise_for_status()
        tally = asyncio.run(run_traffic(service.url, name, requests=1500, concurrency=16))
        assert tally.failed == 0 and tally.feedback_failed == 0

        def stats() -> dict[str, dict[str, float]]:
            body = httpx.get(f"{service.url}/api/experiments/{name}/stats", headers=admin).json()
            return {arm["name"]: arm for arm in body["arms"]}

        wait_until(lambda: sum(arm["decisions"] for arm in stats().values()) == 1500, 5, "both workers flushed")
        for arm_name, arm in stats().items():
            assert arm["decisions"] == tally.decisions[arm_name]
            assert arm["rewards"] == tally.rewards[arm_name]
            assert arm["reward_sum"] == tally.reward_sum[arm_name]
    finally:
        service.stop()
