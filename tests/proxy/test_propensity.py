"""X-Bandit-Propensity: the share the policy gave the answering arm, checked by what it must satisfy.

For propensities p_t of the arm served at each decision t, Σ_t 1{arm_t = a} / p_t over T
decisions has expectation T for every arm a (inverse-propensity weighting counts every arm's
traffic back to the whole): a propensity too low for an arm inflates its sum, one too high
shrinks it. The stats' expected decisions (the same allocations, summed by the proxy) must
match each arm's observed traffic share as well.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.conftest import experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until

REQUESTS = 1500
POLICIES: list[dict[str, Any]] = [
    {"kind": "static", "weights": [0.2, 0.3, 0.5]},
    {"kind": "epsilon_greedy", "epsilon": 0.3},
    {"kind": "thompson", "min_share": 0.05},
]


@pytest.mark.parametrize("policy", POLICIES, ids=[policy["kind"] for policy in POLICIES])
def test_propensities_weight_every_arm_back_to_all_the_traffic(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str, policy: dict[str, Any]
) -> None:
    assert admin.post("/api/experiments", json=experiment_body(name, models, policy=policy)).status_code == 201
    # Per request and arm, 1{served by the arm} / propensity: each averages 1 over the requests.
    weights: defaultdict[str, list[float]] = defaultdict(list)
    served: defaultdict[str, int] = defaultdict(int)
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for _ in range(REQUESTS):
            answer = client.post(f"/invoke/{name}/predict", json={})
            assert answer.status_code == 200
            arm, propensity = answer.headers["X-Bandit-Arm"], float(answer.headers["X-Bandit-Propensity"])
            assert 0 < propensity <= 1
            served[arm] += 1
            for each in models.urls:
                weights[each].append(1 / propensity if each == arm else 0.0)
            reward = {"decision": answer.headers["X-Bandit-Decision"], "reward": answer.json()["outcome"]}
            assert client.post("/feedback", json=reward).status_code == 202
    for arm in models.urls:
        # Within four standard errors of 1: an arm whose propensities were a fifth too low or
        # high (or stale while the policy learns) lands far outside; a rarely played arm's
        # large weights widen the margin as they should.
        mean, spread = statistics.mean(weights[arm]), statistics.stdev(weights[arm]) / math.sqrt(REQUESTS)
        assert abs(mean - 1.0) <= 4 * spread + 0.02, (arm, dict(served), mean, spread)
    wait_until(
        lambda: admin.get(f"/api/experiments/{name}/stats").json()["totals"]["decisions"] == REQUESTS, 10, "counted"
    )
    arms = admin.get(f"/api/experiments/{name}/stats").json()["arms"]
    expected = {arm["name"]: arm["expected_decisions"] for arm in arms}
    assert sum(expected.values()) == pytest.approx(REQUESTS, rel=0.01)
    for arm in arms:
        # The average propensity of each arm is its observed share, within four standard errors
        # of a share (2 to 5 points here) plus one.
        share = arm["decisions"] / REQUESTS
        margin = 4 * math.sqrt(share * (1 - share) / REQUESTS) + 0.01
        assert abs(expected[arm["name"]] / REQUESTS - share) <= margin, (arm["name"], expected, share)
