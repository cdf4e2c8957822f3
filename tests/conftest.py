"""Fixtures: a real Redis (the machine's, or one started on a free port) and real HTTP servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from bandit.cli.local_cluster import LocalCluster
from bandit.cli.local_redis import answers, start_redis
from bandit.store.connection import StoreClient, connect
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess

# A run owns three logical databases of a shared Redis and flushes them, never the default db 0:
# MAB_TEST_DB (the service the tests share), +1 (the store tests, flushed per test) and +2 (the
# state of the last release, tests/test_release_state.py). Two runs whose MAB_TEST_DB differ by 3
# or more share one Redis without flushing each other's state.
TEST_DB = int(os.environ.get("MAB_TEST_DB", "9"))
if not 1 <= TEST_DB <= 13:
    raise pytest.UsageError(f"MAB_TEST_DB={TEST_DB}: the tests use databases MAB_TEST_DB to +2, so 1 to 13")
REWARD_RATES = {"v1": 0.04, "v2": 0.05, "v3": 0.07}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """BANDIT_REDIS_URL if set, else 127.0.0.1:6379 if it answers, else a redis-server of our own."""
    given = os.environ.get("BANDIT_REDIS_URL")
    if given:
        parts = urlsplit(given)
        yield f"{parts.scheme}://{parts.netloc}/{TEST_DB}"
    elif answers("127.0.0.1", 6379):
        yield f"redis://127.0.0.1:6379/{TEST_DB}"
    else:
        process, url = start_redis()
        try:
            yield url.rsplit("/", 1)[0] + f"/{TEST_DB}"
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def clean_test_db(redis_url: str) -> str:
    """The test database, flushed once per session: only for tests that use Redis, so a run of
    the pure policy tests never wipes the state of another run's service."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


#: The store tests' own database, flushed before each of them: the service the other tests share
#: runs on TEST_DB, and flushing that under it would wipe the keyring it signs decisions with.
STORE_TEST_DB = TEST_DB + 1
#: Where tests/test_release_state.py loads the last release's state.
RELEASE_STATE_DB = TEST_DB + 2


@pytest.fixture(params=["redis", "cluster"])
async def redis(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[StoreClient]:
    """A flushed client, for this test: of STORE_TEST_DB on the single Redis, then of the store
    tests' own Redis Cluster (every test that takes it runs on both)."""
    client: StoreClient
    if request.param == "redis":
        client = Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{STORE_TEST_DB}")
        await client.flushdb()
    else:
        cluster: LocalCluster = request.getfixturevalue("store_cluster")
        client = RedisCluster.from_url(cluster.url)
        await client.flushall()  # every primary's keys
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def models() -> Iterator[ModelServers]:
    """Three simulated model versions with hidden reward rates 0.04 / 0.05 / 0.07."""
    servers = ModelServers([f"{name}:{rate}" for name, rate in REWARD_RATES.items()])
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def service(clean_test_db: str, models: ModelServers) -> Iterator[ServiceProcess]:
    process = ServiceProcess(clean_test_db).start()
    yield process
    process.stop()


@pytest.fixture
def admin(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as client:
        yield client


@pytest.fixture
def name() -> str:
    """A fresh experiment name, so tests sharing the service never collide."""
    return f"exp-{uuid.uuid4().hex[:10]}"


def experiment_body(name: str, models: ModelServers, **extra: Any) -> dict[str, Any]:
    return {"name": name, "arms": [{"name": n, "url": u} for n, u in models.urls.items()], **extra}


# -- a Redis Cluster, and the tests that run on both kinds of Redis ------------------------------
@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A 3-primary Redis Cluster on free ports, for the services the tests start on a cluster."""
    cluster = LocalCluster(primaries=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def store_cluster() -> Iterator[LocalCluster]:
    """A second cluster for the store tests, which flush it before each test (as `redis` does its db)."""
    cluster = LocalCluster(primaries=3).start()
    yield cluster
    cluster.stop()


@dataclass(frozen=True)
class Backend:
    """Where a service keeps its state: one Redis or a Redis Cluster, and the settings that say so."""

    kind: str
    url: str
    settings: dict[str, str] = field(default_factory=dict)
    cluster: LocalCluster | None = None


BACKENDS = ["redis", "cluster"]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test that takes this runs on a single Redis and on a 3-primary Redis Cluster."""
    if request.param == "redis":
        return Backend("redis", request.getfixturevalue("clean_test_db"))
    cluster: LocalCluster = request.getfixturevalue("redis_cluster")
    return Backend("cluster", cluster.url, {"BANDIT_REDIS_CLUSTER": "true"}, cluster)


def backend_client(backend: Backend) -> StoreClient:
    """A Redis client of the backend's kind (the caller closes it)."""
    return connect(backend.url, cluster=backend.kind == "cluster")


@pytest.fixture(scope="session")
def cluster_service(redis_cluster: LocalCluster, models: ModelServers) -> Iterator[ServiceProcess]:
    process = ServiceProcess(redis_cluster.url, BANDIT_REDIS_CLUSTER="true").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def backend_service(backend: Backend, request: pytest.FixtureRequest) -> ServiceProcess:
    """The shared service of the backend: `service` on one Redis, `cluster_service` on the cluster."""
    process: ServiceProcess = request.getfixturevalue("service" if backend.kind == "redis" else "cluster_service")
    return process


@pytest.fixture
def backend_admin(backend_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=backend_service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as client:
        yield client
