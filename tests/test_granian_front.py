"""The service under granian (BANDIT_SERVER=granian): the API and dashboard over the ASGI bridge,
the lifespan run on the worker's loop, and counts flushed on a graceful stop.

The proxy's own behaviour under granian is covered by tests/proxy/test_proxy_behaviour.py,
which runs under every server layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import experiment_body
from tests.dashboard.test_events import read_events
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until


@pytest.fixture(scope="module")
def granian(clean_test_db: str) -> Iterator[ServiceProcess]:
    process = ServiceProcess(clean_test_db, BANDIT_SERVER="granian").start()
    yield process
    process.stop()


def test_the_api_answers_through_the_bridge_with_its_own_errors(
    granian: ServiceProcess, models: ModelServers, name: str
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=granian.url, timeout=10) as client:
        assert "granian" in client.get("/readyz").headers.get("server", "")
        assert client.post("/api/experiments", json=experiment_body(name, models)).status_code == 401
        created = client.post("/api/experiments", json=experiment_body(name, models), headers=admin)
        assert created.status_code == 201, created.text
        # A body past the API's limit (1 MiB by default) is refused by Litestar as it arrives.
        too_big = client.post("/api/experiments", content=b"x" * (2 * 1024 * 1024), headers=admin)
        assert too_big.status_code == 413
        invalid = client.post("/api/experiments", json={"name": name}, headers=admin)
        assert invalid.status_code == 422 and "arms" in invalid.text
        assert client.get(f"/api/experiments/{name}x", headers=admin).status_code == 404
        # A percent-encoded path reaches Litestar decoded, as under uvicorn.
        assert client.get(f"/api/experiments/{name.replace('-', '%2D')}", headers=admin).status_code == 200


def test_invoke_feedback_and_stats_under_granian(granian: ServiceProcess, models: ModelServers, name: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=granian.url, timeout=10) as client:
        client.post("/api/experiments", json=experiment_body(name, models), headers=admin).raise_for_status()
        decisions = []
        for _ in range(30):
            response = client.post(f"/invoke/{name}/predict", json={"features": [1, 2]})
            assert response.status_code == 200
            decisions.append(response.headers["x-bandit-decision"])
        for decision in decisions:
            assert client.post("/feedback", json={"decision": decision, "reward": 1}).status_code == 202
        # The same reward again is acknowledged as a duplicate and not counted twice.
        assert client.post("/feedback", json={"decision": decisions[0], "reward": 1}).status_code == 202

        def totals() -> dict[str, int]:
            stats = client.get(f"/api/experiments/{name}/stats", headers=admin).json()
            return {key: stats["totals"][key] for key in ("decisions", "rewards")}

        wait_until(lambda: totals() == {"decisions": 30, "rewards": 30}, 5, "decisions and rewards counted")


def test_the_events_stream_flows_through_the_bridge(granian: ServiceProcess, models: ModelServers, name: str) -> None:
    with httpx.Client(base_url=granian.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    events = read_events(f"{granian.url}/api/experiments/{name}/events", seconds=2.5)
    snapshots = [data for _, kind, data in events if kind == "snapshot"]
    # One a second, each as it is sent: a bridge that buffered the stream would deliver none in time.
    assert len(snapshots) >= 2 and all(data["stats"]["experiment"] == name for data in snapshots)


def test_a_graceful_stop_flushes_the_decisions_counted_in_memory(
    clean_test_db: str, models: ModelServers, name: str
) -> None:
    # A flush interval far longer than the test: only the lifespan's shutdown can write the counts.
    process = ServiceProcess(clean_test_db, BANDIT_SERVER="granian", BANDIT_FLUSH_INTERVAL="600").start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        with httpx.Client(base_url=process.url, timeout=10) as client:
            client.post("/api/experiments", json=experiment_body(name, models), headers=admin).raise_for_status()
            for _ in range(25):
                assert client.post(f"/invoke/{name}/predict", json={}).status_code == 200
        process.stop()
        process.start()
        with httpx.Client(base_url=process.url, timeout=10, headers=admin) as client:
            assert client.get(f"/api/experiments/{name}/stats").json()["totals"]["decisions"] == 25
    finally:
        process.stop()
