"""Conversion mode through a running service: pending decisions count by their exposure."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until


def _invoke(client: httpx.Client, name: str, count: int) -> list[tuple[str, str]]:
    answers = [client.post(f"/invoke/{name}/predict", json={}) for _ in range(count)]
    return [(answer.headers["X-Bandit-Arm"], answer.headers["X-Bandit-Decision"]) for answer in answers]


@pytest.mark.parametrize("pending", ["exposure", "failure"])
def test_fresh_decisions_do_not_count_as_failures_before_their_conversions_could_arrive(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str, pending: str
) -> None:
    # Age slots are a 32nd of the window: 2 s here.
    reward = {"mode": "conversion", "window_s": 64, "pending": pending}
    body = experiment_body(name, models, policy={"kind": "static", "weights": [1, 0, 0]}, reward=reward)
    assert admin.post("/api/experiments", json=body).status_code == 201
    with httpx.Client(base_url=service.url, timeout=10) as client:
        first = _invoke(client, name, 100)
        time.sleep(4.0)  # every conversion of this experiment comes ~4 s after its decision
        for _arm, decision in first[:30]:
            assert client.post("/feedback", json={"decision": decision, "reward": 1}).status_code == 202
        _invoke(client, name, 300)  # just made: none of them could have converted yet
    wait_until(lambda: admin.get(f"/api/experiments/{name}/stats").json()["totals"]["decisions"] == 400, 10, "counted")
    v1 = next(arm for arm in admin.get(f"/api/experiments/{name}/stats").json()["arms"] if arm["name"] == "v1")
    assert v1["rewards"] == 30 and v1["decisions"] == 400
    if pending == "failure":
        assert v1["mean"] == pytest.approx(30 / 400, abs=0.01)  # every open decision a failure
    else:
        # The 300 new decisions are younger than any conversion delay seen, so they count for
        # next to nothing; the first 100, about 5 s old, count for half to all of each.
        assert 0.25 < v1["mean"] < 0.65 and v1["effective_rewards"] < 130
