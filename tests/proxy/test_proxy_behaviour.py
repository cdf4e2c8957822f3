"""The proxy in a running service against real loopback upstreams: streaming, limits, errors,
traversal, shadow arms, sticky units, and an arm killed and restarted mid-run."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bandit.cli.local_redis import free_port
from tests.conftest import Backend
from tests.servers import ModelServers, ServiceProcess, wait_until

MB = 1024 * 1024


def peak_memory_kb(service: ServiceProcess) -> int:
    """VmHWM: the most resident memory the service process has ever held."""
    assert service.process is not None
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


#: Every test here runs under each server layer `mab serve` offers (BANDIT_SERVER).
SERVERS = ["uvicorn", "granian"]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def service(server: str, clean_test_db: str, models: ModelServers) -> Iterator[ServiceProcess]:
    """The shared service, once per server layer."""
    process = ServiceProcess(clean_test_db, BANDIT_SERVER=server).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def big_service(server: str, clean_test_db: str) -> Iterator[ServiceProcess]:
    """A service allowed 100 MB bodies, with fast health probes and a tiny shadow queue."""
    service = ServiceProcess(
        clean_test_db,
        BANDIT_SERVER=server,
        BANDIT_MAX_BODY_BYTES=str(100 * MB),
        BANDIT_PROBE_INTERVAL="0.2",
        BANDIT_SHADOW_QUEUE_SIZE="4",
    ).start()
    yield service
    service.stop()


def create(service: ServiceProcess, name: str, arms: list[dict[str, object]], **settings: object) -> None:
    with httpx.Client(base_url=service.url, headers={"Authorization": "Bearer test-admin-token"}) as admin:
        admin.post("/api/experiments", json={"name": name, "arms": arms, **settings}).raise_for_status()


def stats(service: ServiceProcess, name: str) -> dict[str, dict[str, object]]:
    with httpx.Client(base_url=service.url, headers={"Authorization": "Bearer test-admin-token"}) as admin:
        return {arm["name"]: arm for arm in admin.get(f"/api/experiments/{name}/stats").json()["arms"]}


def chunks(total: int, size: int = MB) -> Iterator[bytes]:
    block = bytes(range(256)) * (size // 256)
    for offset in range(0, total, size):
        yield block[: min(size, total - offset)]


def test_a_50_mb_upload_and_download_stream_through_without_being_held(
    big_service: ServiceProcess, models: ModelServers, name: str
) -> None:
    create(big_service, name, [{"name": "v1", "url": models.urls["v1"]}])
    expected = hashlib.sha256(b"".join(chunks(50 * MB))).hexdigest()
    with httpx.Client(base_url=big_service.url, timeout=60) as client:
        # A first 4 MB each way pays the client's one-time buffers and pools, which do not grow with size.
        assert client.post(f"/invoke/{name}/sink", content=chunks(4 * MB)).status_code == 200
        assert len(client.get(f"/invoke/{name}/stream/{4 * MB}").content) == 4 * MB
    before = peak_memory_kb(big_service)
    with httpx.Client(base_url=big_service.url, timeout=60) as client:
        # Chunked (no length) and with a declared length: both stream.
        for headers in ({}, {"content-length": str(50 * MB)}):
            response = client.post(f"/invoke/{name}/sink", content=chunks(50 * MB), headers=headers)
            assert response.status_code == 200, response.text
            assert response.json() == {"bytes": 50 * MB, "sha256": expected}
        with client.stream("GET", f"/invoke/{name}/stream/{50 * MB}") as response:
            received = sum(len(chunk) for chunk in response.iter_raw())
        assert response.status_code == 200 and received == 50 * MB
    # A proxy that held a 50 MB body whole would grow its peak by at least 50 MB.
    grown_mb = (peak_memory_kb(big_service) - before) / 1024
    assert grown_mb < 20, f"peak memory grew by {grown_mb:.0f} MB"


def test_bodies_past_the_limit_get_413(service: ServiceProcess, models: ModelServers, name: str) -> None:
    create(service, name, [{"name": "v1", "url": models.urls["v1"]}])
    limit = 16 * MB  # the default BANDIT_MAX_BODY_BYTES
    with httpx.Client(base_url=service.url, timeout=30) as client:
        declared = client.post(f"/invoke/{name}/sink", content=b"x" * (limit + 1))
        streamed = client.post(f"/invoke/{name}/sink", content=chunks(limit + MB))
        fits = client.post(f"/invoke/{name}/sink", content=chunks(limit))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert str(limit) in response.json()["detail"]
    assert fits.status_code == 200 and fits.json()["bytes"] == limit


def test_dead_upstream_is_502_and_slow_one_504(service: ServiceProcess, models: ModelServers, name: str) -> None:
    dead = {"name": "dead", "url": f"http://127.0.0.1:{free_port()}"}
    create(service, f"{name}-dead", [dead])
    create(service, f"{name}-slow", [{"name": "slow", "url": models.urls["v1"], "read_timeout_s": 0.2}])
    with httpx.Client(base_url=service.url, timeout=10) as client:
        refused = client.post(f"/invoke/{name}-dead/predict", json={})
        started = time.monotonic()
        slow = client.post(f"/invoke/{name}-slow/slow/2000", json={})
        waited = time.monotonic() - started
        quick = client.post(f"/invoke/{name}-slow/slow/10", json={})
    assert refused.status_code == 502 and refused.headers["x-bandit-arm"] == "dead"
    assert slow.status_code == 504 and waited < 1.5, waited
    assert quick.status_code == 200
    # Details stay in the log: the caller sees which arm, not the library's message.
    for response in (refused, slow):
        assert set(response.json()) == {"status_code", "detail"} and "127.0.0.1" not in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/..%2F..%2Fadmin",
        "/%2e%2e/%2e%2e/etc/passwd",
        "//evil.example/x",
        "/@evil.example/x",
        "/http://evil.example/x",
        "/a/..%5C..%5Cb",
    ],
)
def test_no_path_reaches_another_host(service: ServiceProcess, models: ModelServers, name: str, path: str) -> None:
    create(service, name, [{"name": "v1", "url": models.urls["v1"] + "/echo"}])
    with httpx.Client(base_url=service.url, timeout=10) as client:
        raw = httpx.URL(f"{service.url}/invoke/{name}{path}")
        response = client.send(httpx.Request("GET", raw))
    # Either refused outright, or it reached the one configured upstream under its base path.
    if response.status_code != 400:
        assert response.status_code == 200
        echoed = response.json()
        assert echoed["model"] == "v1" and echoed["raw_path"].startswith("/echo/")


def test_shadow_arm_gets_copies_is_never_served_and_never_slows_the_caller(
    big_service: ServiceProcess, name: str
) -> None:
    servers = ModelServers(["main:0.5", "shadow:0.5:0:300"])
    try:
        arms = [
            {"name": "main", "url": servers.urls["main"]},
            {"name": "shadow", "url": servers.urls["shadow"], "shadow": True},
        ]
        create(big_service, name, arms, policy={"kind": "thompson"})
        served: Counter[str] = Counter()
        durations = []
        with httpx.Client(base_url=big_service.url, timeout=10) as client:
            for _ in range(60):
                started = time.monotonic()
                response = client.post(f"/invoke/{name}/predict", json={"x": 1})
                durations.append(time.monotonic() - started)
                assert response.status_code == 200
                served[response.headers["x-bandit-arm"]] += 1
        assert served == {"main": 60}
        # The shadow answers in 300 ms; the caller's median stays far below it.
        assert sorted(durations)[30] < 0.1, sorted(durations)[30]
        wait_until(lambda: stats(big_service, name)["shadow"]["decisions"] > 0, 5, "mirrored requests counted")
        shadow = stats(big_service, name)["shadow"]
        # A queue of 4 copies and 16 workers against a 300 ms shadow: some copies go through,
        # and with 60 requests in ~1 s the rest are dropped and counted, never queued without bound.
        wait_until(lambda: stats(big_service, name)["shadow"]["mirror_dropped"] > 0, 5, "dropped copies counted")
        assert shadow["allocation"] == 0.0
    finally:
        servers.stop()


def test_sticky_units_keep_their_arm(service: ServiceProcess, models: ModelServers, name: str) -> None:
    arms = [{"name": arm, "url": models.urls[arm]} for arm in ("v1", "v2", "v3")]
    create(service, name, arms, policy={"kind": "thompson"})
    with httpx.Client(base_url=service.url, timeout=10) as client:
        per_unit = {
            unit: {
                client.post(f"/invoke/{name}/predict", json={}, headers={"X-Bandit-Unit": unit}).headers["x-bandit-arm"]
                for _ in range(8)
            }
            for unit in [f"user-{i}" for i in range(30)]
        }
    assert all(len(seen) == 1 for seen in per_unit.values()), per_unit
    # With no data every arm is equally likely: 30 units must not all land on one arm.
    assert len({next(iter(seen)) for seen in per_unit.values()}) > 1


def test_an_arm_killed_mid_run_is_ejected_and_returns_after_restart(big_service: ServiceProcess, name: str) -> None:
    port = free_port()
    steady = ModelServers(["steady:0.5"])
    victim = ModelServers([f"victim:0.5:{port}"])
    try:
        arms = [
            {"name": "steady", "url": steady.urls["steady"], "health_path": "/health"},
            {"name": "victim", "url": victim.urls["victim"], "health_path": "/health"},
        ]
        create(big_service, name, arms, policy={"kind": "static", "weights": [1, 1]})
        with httpx.Client(base_url=big_service.url, timeout=10) as client:

            def burst(n: int) -> Counter[str]:
                outcomes: Counter[str] = Counter()
                for _ in range(n):
                    response = client.post(f"/invoke/{name}/predict", json={})
                    outcomes[
                        response.headers.get("x-bandit-arm", "?") if response.status_code == 200 else "failed"
                    ] += 1
                return outcomes

            assert burst(40)["victim"] > 0
            victim.stop()
            # Refused connections are retried on the healthy arm: no request fails.
            during = burst(100)
            assert during["failed"] == 0 and during["steady"] == 100, during
            wait_until(lambda: stats(big_service, name)["victim"]["health"] == "ejected", 5, "victim ejected")
            assert burst(40) == {"steady": 40}
            victim = ModelServers([f"victim:0.5:{port}"])
            # The probe readmits it within a few probe intervals, and it takes traffic again.
            wait_until(lambda: stats(big_service, name)["victim"]["health"] == "healthy", 5, "victim readmitted")
            assert burst(60)["victim"] > 0
    finally:
        steady.stop()
        victim.stop()


def test_a_config_change_reaches_every_worker_of_every_replica_within_a_second(
    backend: Backend, models: ModelServers, name: str
) -> None:
    """On a single Redis and on a Redis Cluster, where the notice is published on one node and
    each replica listens on whichever node it picked."""
    # Polling every 30 s: only the pub/sub change notice can deliver the change in time.
    quiet = {"BANDIT_REFRESH_INTERVAL": "30", **backend.settings}
    service = ServiceProcess(backend.url, BANDIT_WORKERS="2", **quiet).start()
    other = ServiceProcess(backend.url, **quiet).start()
    try:
        arms = [{"name": "v1", "url": models.urls["v1"]}, {"name": "v2", "url": models.urls["v2"]}]
        create(service, name, arms, policy={"kind": "static", "weights": [1, 0]})
        # New connections spread over both workers; every one of them must know the experiment.
        wait_until(
            lambda: all(
                httpx.post(f"{service.url}/invoke/{name}/predict", json={}).status_code == 200 for _ in range(20)
            ),
            5,
            "both workers know the experiment",
        )
        # The other replica routes it from a snapshot too, which only the notice can update.
        assert httpx.post(f"{other.url}/invoke/{name}/predict", json={}).headers["x-bandit-arm"] == "v1"
        with httpx.Client(base_url=service.url, headers={"Authorization": "Bearer test-admin-token"}) as admin:
            admin.patch(f"/api/experiments/{name}", json={"policy": {"kind": "static", "weights": [0, 1]}})
        changed_at = time.monotonic()
        time.sleep(1.0)
        arms_served = Counter(
            httpx.post(f"{service.url}/invoke/{name}/predict", json={}).headers["x-bandit-arm"] for _ in range(60)
        )
        assert arms_served == {"v2": 60}, (arms_served, time.monotonic() - changed_at)
        served_by_other = Counter(
            httpx.post(f"{other.url}/invoke/{name}/predict", json={}).headers["x-bandit-arm"] for _ in range(20)
        )
        assert served_by_other == {"v2": 20}, served_by_other
    finally:
        service.stop()
        other.stop()
