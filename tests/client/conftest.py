"""Fixtures of the client tests: a Client on the shared service, fresh experiments, and a service
of their own on a Redis of their own, which can be killed and started again."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bandit.cli.local_redis import free_port, start_redis
from bandit.client import Client
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

FEEDBACK_TOKEN = "test-feedback-token"


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[Client]:
    with Client(service.url, token=ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def experiment(client: Client, models: ModelServers, name: str) -> str:
    """A fresh experiment on the shared service (three arms, Thompson, rewards in [0, 1])."""
    client.create_experiment(experiment_body(name, models))
    return name


def decisions(client: Client, experiment: str, count: int) -> list[str]:
    """`count` fresh decision ids of the experiment, each from a real invocation."""
    ids = []
    for _ in range(count):
        invocation = client.invoke(experiment, "predict", json={"x": 1})
        assert invocation.ok and invocation.decision is not None, (invocation.status_code, invocation.text)
        ids.append(invocation.decision)
    return ids


def counted(client: Client, experiment: str) -> dict[str, Any]:
    """The service's own books: {"rewards", "reward_sum", "decisions"} of the experiment, all time
    (the totals, which must agree with the arms' own counts)."""
    stats = client.stats(experiment)
    totals: dict[str, Any] = stats["totals"]
    assert sum(arm["rewards"] for arm in stats["arms"]) == totals["rewards"], stats
    return totals


class RestartableRedis:
    """A durable redis-server of these tests alone (AOF, fsync always) that can be killed and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="mab-client-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = start_redis(self.port, self.workdir, durable=True)[0]

    def kill(self) -> None:
        """SIGKILL: only what its AOF holds (every acknowledged write) survives."""
        self.process.kill()
        self.process.wait(timeout=10)

    def start(self) -> None:
        if self.process.poll() is not None:
            self.process = start_redis(self.port, self.workdir, durable=True)[0]

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Killed for the duration of the block, then started again on its AOF (also if the block fails)."""
        self.kill()
        try:
            yield
        finally:
            self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def own_redis() -> Iterator[RestartableRedis]:
    redis = RestartableRedis()
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def own_service(own_redis: RestartableRedis, models: ModelServers) -> Iterator[ServiceProcess]:
    """A service on `own_redis` for the outage and token tests: feedback behind its own token (not
    open), and API bodies up to 16 KiB (a batch of a few hundred rewards is refused as too large)."""
    process = ServiceProcess(
        own_redis.url,
        BANDIT_FEEDBACK_TOKEN=FEEDBACK_TOKEN,
        BANDIT_FEEDBACK_OPEN="",
        BANDIT_MAX_API_BODY_BYTES=str(16 * 1024),
    ).start()
    yield process
    process.stop()


def ready(service: ServiceProcess) -> bool:
    try:
        return httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(service: ServiceProcess) -> None:
    wait_until(lambda: ready(service), 30, "the service ready again")
