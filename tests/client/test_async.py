"""AsyncClient and AsyncFeedbackBatcher against a real service: the same rules as their sync twins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bandit.cli.local_redis import free_port
from bandit.client import ApiError, AsyncClient, AsyncFeedbackBatcher, Backoff, FeedbackFailure, Unreachable
from tests.client.transports import AsyncLosingTransport
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess


@pytest.fixture
async def aclient(service: ServiceProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(service.url, token=ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
async def aexperiment(aclient: AsyncClient, models: ModelServers, name: str) -> str:
    await aclient.create_experiment(experiment_body(name, models))
    return name


async def adecisions(client: AsyncClient, experiment: str, count: int) -> list[str]:
    """`count` fresh decisions, invoked 20 at a time."""
    ids: list[str] = []
    while len(ids) < count:
        answers = await asyncio.gather(
            *[client.invoke(experiment, "predict", json={"x": 1}) for _ in range(min(20, count - len(ids)))]
        )
        for answer in answers:
            assert answer.ok and answer.decision is not None, (answer.status_code, answer.text)
            ids.append(answer.decision)
    return ids


async def rewards_counted(client: AsyncClient, experiment: str) -> int:
    return int((await client.stats(experiment))["totals"]["rewards"])


async def until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.02)


async def test_invoke_reward_and_duplicate(aclient: AsyncClient, aexperiment: str) -> None:
    invocation = await aclient.invoke(aexperiment, "predict", json={"x": 1}, unit="unit-1")
    assert invocation.ok and invocation.experiment == aexperiment and invocation.arm in {"v1", "v2", "v3"}
    again = await aclient.invoke(aexperiment, "predict", unit="unit-1")
    assert again.arm == invocation.arm
    assert invocation.decision is not None
    assert (await aclient.reward(invocation.decision, 1)).accepted == 1
    assert (await aclient.reward(invocation.decision, 1)).duplicate == 1
    assert await rewards_counted(aclient, aexperiment) == 1


async def test_management_and_its_refusals(aclient: AsyncClient, models: ModelServers, name: str) -> None:
    assert (await aclient.create_experiment(experiment_body(name, models)))["name"] == name
    assert name in [e["name"] for e in await aclient.list_experiments()]
    assert (await aclient.get_experiment(name))["status"] == "running"
    assert (await aclient.update_experiment(name, {"policy": {"kind": "ucb1"}}))["policy"]["kind"] == "ucb1"
    assert (await aclient.pause(name))["status"] == "paused"
    assert (await aclient.resume(name))["status"] == "running"
    assert (await aclient.promote(name, "v3"))["promoted_arm"] == "v3"
    assert (await aclient.rollback(name))["status"] == "running"
    assert (await aclient.reset(name))["name"] == name
    assert (await aclient.stats(name))["totals"]["rewards"] == 0
    with pytest.raises(ApiError) as exists:
        await aclient.create_experiment(experiment_body(name, models))
    assert exists.value.status == 409
    with pytest.raises(ApiError) as bad:
        await aclient.promote(name, "v9")
    assert bad.value.status == 404 and "v9" in bad.value.detail
    await aclient.delete_experiment(name)
    with pytest.raises(ApiError) as gone:
        await aclient.stats(name)
    assert gone.value.status == 404
    async with AsyncClient(aclient.url, token="") as anonymous:
        with pytest.raises(ApiError) as missing:
            await anonymous.list_experiments()
    assert missing.value.status == 401


async def test_a_service_that_is_not_listening_is_unreachable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(Unreachable):
            await client.invoke("any", "predict")
        with pytest.raises(Unreachable):
            await client.get_experiment("any")


async def test_batches_go_by_size_by_age_and_on_close(aclient: AsyncClient, aexperiment: str) -> None:
    ids = await adecisions(aclient, aexperiment, 130)
    batcher = aclient.batcher(max_items=50, max_delay_s=60)
    for decision in ids[:120]:
        assert batcher.add(decision, 1)
    await until(lambda: batcher.counters.sent == 100, 5, "two full batches")
    await asyncio.sleep(0.3)
    assert (batcher.counters.sent, batcher.counters.pending) == (100, 20)
    final = await batcher.close()
    assert (final.accepted, final.pending, final.failed) == (120, 0, 0), final
    assert await rewards_counted(aclient, aexperiment) == 120

    async with aclient.batcher(max_items=1000, max_delay_s=0.2) as by_age:
        started = time.monotonic()
        for decision in ids[120:]:
            by_age.add(decision, 0)
        await until(lambda: by_age.counters.accepted == 10, 5, "the batch sent by its age")
        assert time.monotonic() - started >= 0.2
    assert await rewards_counted(aclient, aexperiment) == 130


async def test_a_lost_reply_is_sent_again_and_counts_once(service: ServiceProcess, aexperiment: str) -> None:
    transport = AsyncLosingTransport(lose=1)
    async with AsyncClient(service.url, token=ADMIN_TOKEN, transport=transport) as client:
        ids = await adecisions(client, aexperiment, 25)
        reported: list[FeedbackFailure] = []
        batcher = client.batcher(max_delay_s=60, backoff=Backoff(initial_s=0.02, max_s=0.1), on_error=reported.extend)
        for decision in ids:
            batcher.add(decision, 1)
        assert await batcher.flush(timeout_s=10)
        counters = batcher.counters
        assert (counters.retries, counters.accepted, counters.duplicate, counters.failed) == (1, 0, 25, 0), counters
        assert reported == []
        assert await rewards_counted(client, aexperiment) == 25
    assert batcher.closed  # closed with its client


async def test_add_outside_a_running_loop_is_refused_clearly(aclient: AsyncClient) -> None:
    batcher = AsyncFeedbackBatcher(aclient, max_delay_s=60)
    with pytest.raises(ValueError, match="must be a number"):
        batcher.add("decision", None)  # type: ignore[arg-type]
    assert "from the event loop it runs on" in await asyncio.to_thread(_add_from_a_thread, batcher)
    batcher.add("not-a-decision", 1)  # on the loop: taken (and refused by the service as forged)
    assert "from the event loop it runs on" in await asyncio.to_thread(_add_from_a_thread, batcher)
    final = await batcher.close()
    assert (final.added, final.rejected) == (1, 1), final


def _add_from_a_thread(batcher: AsyncFeedbackBatcher) -> str:
    try:
        batcher.add("decision", 1)
    except RuntimeError as error:
        return str(error)
    return "no error"
