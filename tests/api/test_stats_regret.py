"""The regret and lift the dashboard shows are in the stats endpoint too."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import experiment_body
from tests.servers import ModelServers, ServiceProcess


def test_stats_carry_regret_and_lift_against_the_leader(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
    fresh = admin.get(f"/api/experiments/{name}/stats").json()
    assert fresh["regret"] == {"leader": None, "regret": 0.0, "lift": None}
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for _ in range(300):
            answer = client.post(f"/invoke/{name}/predict", json={})
            reward = {"decision": answer.headers["X-Bandit-Decision"], "reward": answer.json()["outcome"]}
            assert client.post("/feedback", json=reward).status_code == 202
    stats = admin.get(f"/api/experiments/{name}/stats").json()
    regret = stats["regret"]
    assert regret["leader"] == stats["leader"] is not None
    arms = {arm["name"]: arm for arm in stats["arms"]}
    best = arms[regret["leader"]]["mean"]
    assert regret["regret"] == pytest.approx(sum(arm["decisions"] * (best - arm["mean"]) for arm in arms.values()))
    obtained = sum(arm["reward_sum"] for arm in arms.values()) / sum(arm["rewards"] for arm in arms.values())
    if obtained:
        assert regret["lift"] == pytest.approx((best - obtained) / obtained)
