"""The service on a real 3-primary Redis Cluster: experiments on every primary, scripts reloaded.

The core contract runs on both kinds of Redis through the `backend` fixture (end to end,
lifecycle, restarts, rotation, change notices, the dashboard); this file holds what only a
cluster has.
"""

from __future__ import annotations

import subprocess
import time

import httpx

from bandit.cli.local_cluster import LocalCluster
from bandit.store import keys
from tests.conftest import experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until


def _invoke_and_reward(service: ServiceProcess, name: str, n: int) -> dict[str, int]:
    """`n` invokes, each rewarded 1 once; returns the decisions per arm the client saw."""
    served: dict[str, int] = {}
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for _ in range(n):
            response = client.post(f"/invoke/{name}/predict", json={})
            assert response.status_code == 200, response.text
            served[response.headers["X-Bandit-Arm"]] = served.get(response.headers["X-Bandit-Arm"], 0) + 1
            answer = client.post("/feedback", json={"decision": response.headers["X-Bandit-Decision"], "reward": 1})
            assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
    return served


def _counted(admin: httpx.Client, name: str) -> dict[str, tuple[int, int]]:
    arms = admin.get(f"/api/experiments/{name}/stats").json()["arms"]
    return {arm["name"]: (arm["decisions"], arm["rewards"]) for arm in arms if arm["decisions"] or arm["rewards"]}


def test_experiments_spread_over_every_primary_and_each_works(
    redis_cluster: LocalCluster, cluster_service: ServiceProcess, models: ModelServers
) -> None:
    names = [f"spread-{index}-{time.monotonic_ns() % 10_000}" for index in range(9)]
    owners = {name: redis_cluster.owner_of(keys.config(name)) for name in names}
    # Nine names hash to three primaries; should they happen to miss one, add names until they don't.
    extra = 0
    while len(set(owners.values())) < 3:
        name = f"spread-extra-{extra}-{time.monotonic_ns() % 10_000}"
        owners[name] = redis_cluster.owner_of(keys.config(name))
        extra += 1
    assert set(owners.values()) == set(redis_cluster.primary_ports()), owners

    with httpx.Client(base_url=cluster_service.url, headers={"Authorization": "Bearer test-admin-token"}) as admin:
        for name in owners:
            admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        listed = {experiment["name"] for experiment in admin.get("/api/experiments").json()}
        assert set(owners) <= listed
        served = {name: _invoke_and_reward(cluster_service, name, 12) for name in owners}
        for name in owners:
            expected = {arm: (count, count) for arm, count in served[name].items()}
            wait_until(lambda name=name, expected=expected: _counted(admin, name) == expected, 5, f"{name} counted")
        overview = admin.get("/dashboard/data/overview")
        assert overview.status_code == 200
        assert set(owners) <= {row["name"] for row in overview.json()}
        for name in owners:
            assert admin.delete(f"/api/experiments/{name}").status_code == 204


def test_scripts_are_loaded_again_after_the_script_cache_is_emptied(
    redis_cluster: LocalCluster, cluster_service: ServiceProcess, models: ModelServers, name: str
) -> None:
    """A failover or a reshard leaves the new primary without the scripts: NOSCRIPT, then a reload."""
    with httpx.Client(base_url=cluster_service.url, headers={"Authorization": "Bearer test-admin-token"}) as admin:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        first = _invoke_and_reward(cluster_service, name, 5)
        for port in redis_cluster.primary_ports():
            flushed = subprocess.run(
                ["redis-cli", "-p", str(port), "script", "flush"], capture_output=True, text=True, check=True
            )
            assert flushed.stdout.strip() == "OK"
        # Feedback, the decision flush and a config change each run a script the primary has forgotten.
        second = _invoke_and_reward(cluster_service, name, 5)
        patched = admin.patch(f"/api/experiments/{name}", json={"policy": {"kind": "epsilon_greedy", "epsilon": 0.3}})
        assert patched.status_code == 200, patched.text
        expected = {arm: (first.get(arm, 0) + second.get(arm, 0),) * 2 for arm in {*first, *second}}
        wait_until(lambda: _counted(admin, name) == expected, 5, "every decision and reward counted")
