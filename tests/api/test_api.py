"""The HTTP contract of a running service: refusals, stats fields, lifecycle, restarts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import Backend, experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until


def invoke(service: ServiceProcess, name: str, n: int = 1, **headers: str) -> list[httpx.Response]:
    with httpx.Client(base_url=service.url, timeout=10) as client:
        return [client.post(f"/invoke/{name}/predict", json={"x": 1}, headers=headers) for _ in range(n)]


def test_feedback_refusals(service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    decision = invoke(service, name)[0].headers["X-Bandit-Decision"]
    head, _, signature = decision.rpartition(".")
    altered_arm = (
        decision.replace(".v1.", ".v3.").replace(".v2.", ".v3.")
        if ".v3." not in decision
        else decision.replace(".v3.", ".v1.")
    )
    with httpx.Client(base_url=service.url) as client:
        for forged in [altered_arm, f"{head}.{signature[::-1]}", "not-a-decision", decision[:-1]]:
            response = client.post("/feedback", json={"decision": forged, "reward": 1})
            assert response.status_code == 403, forged
            assert "decision" in response.json()["detail"]
        assert client.post("/feedback", json={"decision": decision, "reward": 1}).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "d", "reward": "high"}, "`reward`"),
        ({"decision": 5, "reward": 1}, "`decision`"),
        ({"decision": "d"}, "`reward`"),
        ({"reward": 1}, "`decision`"),
        ({"items": "all of them"}, "`items`"),
        ({"items": [{"decision": "d", "reward": None}]}, "`items[0].reward`"),
        ({"items": [{"decision": "d", "reward": 1}] * 1001}, "`items`"),
        (b"{not json", "JSON"),
        (b"", "body"),
    ],
)
def test_malformed_feedback_gets_422_naming_the_field(service: ServiceProcess, body: Any, field: str) -> None:
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    response = httpx.post(f"{service.url}/feedback", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_unknown_experiment_and_missing_token(service: ServiceProcess, admin: httpx.Client) -> None:
    assert invoke(service, "no-such-experiment")[0].status_code == 404
    assert admin.get("/api/experiments/no-such-experiment/stats").status_code == 404
    assert admin.post("/api/experiments/no-such-experiment/pause").status_code == 404
    assert httpx.get(f"{service.url}/api/experiments").status_code == 401
    assert httpx.post(f"{service.url}/api/experiments", json={}).status_code == 401
    wrong = httpx.get(f"{service.url}/api/experiments", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 403


def test_stats_carry_the_contract_fields(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    for response in invoke(service, name, 30):
        httpx.post(
            f"{service.url}/feedback",
            json={"decision": response.headers["X-Bandit-Decision"], "reward": response.json()["outcome"]},
        )
    wait_until(lambda: admin.get(f"/api/experiments/{name}/stats").json()["totals"]["decisions"] == 30, 5, "flush")
    stats = admin.get(f"/api/experiments/{name}/stats").json()
    assert stats["experiment"] == name and stats["status"] == "running"
    assert {"decisions", "rewards", "reward_sum"} <= set(stats["totals"])
    fields = {
        "name",
        "decisions",
        "rewards",
        "reward_sum",
        "mean",
        "interval",
        "p_best",
        "allocation",
        "latency_ms",
        "errors",
        "healthy",
    }
    for arm in stats["arms"]:
        assert fields <= set(arm)
        assert set(arm["latency_ms"]) == {"p50", "p99"}
        if arm["decisions"]:
            # A Beta posterior interval: inside the reward bounds, around the shrunk mean.
            assert arm["latency_ms"]["p50"] > 0 and 0 <= arm["interval"][0] < arm["interval"][1] <= 1
    assert sum(arm["allocation"] for arm in stats["arms"]) == pytest.approx(1.0)
    assert sum(arm["p_best"] for arm in stats["arms"]) == pytest.approx(1.0)


def test_lifecycle_pause_promote_resume_reset(
    backend_service: ServiceProcess, models: ModelServers, backend_admin: httpx.Client, name: str
) -> None:
    """On a single Redis and on a Redis Cluster."""
    service, admin = backend_service, backend_admin
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    old_decision = invoke(service, name)[0].headers["X-Bandit-Decision"]

    assert admin.post(f"/api/experiments/{name}/pause").json()["status"] == "paused"
    assert {r.headers["X-Bandit-Arm"] for r in invoke(service, name, 20)} == {"v1"}
    assert admin.post(f"/api/experiments/{name}/promote", json={"arm": "v3"}).json()["status"] == "promoted"
    assert {r.headers["X-Bandit-Arm"] for r in invoke(service, name, 20)} == {"v3"}
    assert admin.post(f"/api/experiments/{name}/promote", json={"arm": "nope"}).status_code == 404
    assert admin.post(f"/api/experiments/{name}/resume").json()["status"] == "running"
    assert len({r.headers["X-Bandit-Arm"] for r in invoke(service, name, 60)}) > 1

    assert admin.post(f"/api/experiments/{name}/reset").status_code == 200
    assert admin.get(f"/api/experiments/{name}/stats").json()["totals"]["decisions"] == 0
    stale = httpx.post(f"{service.url}/feedback", json={"decision": old_decision, "reward": 1})
    assert stale.status_code == 410

    patched = admin.patch(f"/api/experiments/{name}", json={"policy": {"kind": "epsilon_greedy", "epsilon": 0.2}})
    policy = patched.json()["policy"]
    assert policy["kind"] == "epsilon_greedy" and policy["epsilon"] == 0.2 and policy["decay"] == 0.0
    assert admin.patch(f"/api/experiments/{name}", json={"arms": []}).status_code == 422
    assert admin.delete(f"/api/experiments/{name}").status_code == 204
    assert invoke(service, name)[0].status_code == 404


def test_a_patch_that_makes_the_promoted_arm_a_shadow_ends_the_promotion(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    assert admin.post(f"/api/experiments/{name}/promote", json={"arm": "v3"}).json()["status"] == "promoted"
    arms = [{"name": n, "url": u, "shadow": n == "v3"} for n, u in models.urls.items()]
    patched = admin.patch(f"/api/experiments/{name}", json={"arms": arms}).json()
    # A shadow arm serves nothing: all traffic cannot go to it, so the policy routes again.
    assert (patched["status"], patched["promoted_arm"]) == ("running", None)
    wait_until(lambda: {r.headers["X-Bandit-Arm"] for r in invoke(service, name, 30)} <= {"v1", "v2"}, 5, "v3 out")


def test_blue_green_promote_swaps_the_split(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str
) -> None:
    body = experiment_body(name, models, policy={"kind": "static", "weights": [100, 0]})
    body["arms"] = body["arms"][:2]
    admin.post("/api/experiments", json=body).raise_for_status()
    assert {r.headers["X-Bandit-Arm"] for r in invoke(service, name, 20)} == {"v1"}
    admin.post(f"/api/experiments/{name}/promote").raise_for_status()
    assert {r.headers["X-Bandit-Arm"] for r in invoke(service, name, 20)} == {"v2"}


def test_sticky_units_see_one_version(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str
) -> None:
    body = experiment_body(name, models, policy={"kind": "static"})
    admin.post("/api/experiments", json=body).raise_for_status()
    seen = {
        unit: {r.headers["X-Bandit-Arm"] for r in invoke(service, name, 5, **{"X-Bandit-Unit": unit})}
        for unit in [f"user-{i}" for i in range(30)]
    }
    assert all(len(arms) == 1 for arms in seen.values())
    assert len({next(iter(arms)) for arms in seen.values()}) == 3  # units spread over all arms


def test_forwarding_keeps_method_path_query_body_headers(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str
) -> None:
    body = experiment_body(name, models, policy={"kind": "static", "weights": [1, 0, 0]})
    admin.post("/api/experiments", json=body).raise_for_status()
    response = httpx.put(
        f"{service.url}/invoke/{name}/echo/a%20b/c?x=1&y=%2F",
        content=b"payload",
        headers={"X-Custom": "kept", "Connection": "close, X-Hop", "X-Hop": "dropped"},
    )
    echoed = response.json()
    assert response.status_code == 200 and response.headers["X-Bandit-Arm"] == "v1"
    assert (echoed["method"], echoed["raw_path"], echoed["query"], echoed["body"]) == (
        "PUT",
        "/echo/a%20b/c",
        "x=1&y=%2F",
        "payload",
    )
    sent = dict(echoed["headers"])
    assert sent["x-custom"] == "kept" and "x-hop" not in sent
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-proto"] == "http"
    assert httpx.post(f"{service.url}/invoke/{name}/a/%2e%2e/b").status_code == 400


def test_dead_upstream_answers_502_and_counts_errors(service: ServiceProcess, admin: httpx.Client, name: str) -> None:
    from bandit.cli.local_redis import free_port

    body = {"name": name, "arms": [{"name": "dead", "url": f"http://127.0.0.1:{free_port()}"}]}
    admin.post("/api/experiments", json=body).raise_for_status()
    responses = invoke(service, name, 4)
    assert [r.status_code for r in responses] == [502] * 4
    assert "X-Bandit-Decision" not in responses[0].headers
    wait_until(lambda: admin.get(f"/api/experiments/{name}/stats").json()["arms"][0]["errors"] == 4, 5, "flush")
    arm = admin.get(f"/api/experiments/{name}/stats").json()["arms"][0]
    assert arm["healthy"] is False and arm["decisions"] == 0


def test_state_survives_a_restart(backend: Backend, models: ModelServers, name: str) -> None:
    service = ServiceProcess(backend.url, **backend.settings).start()
    try:
        headers = {"Authorization": "Bearer test-admin-token"}
        httpx.post(
            f"{service.url}/api/experiments", json=experiment_body(name, models), headers=headers
        ).raise_for_status()
        responses = invoke(service, name, 40)
        for response in responses[:20]:
            httpx.post(f"{service.url}/feedback", json={"decision": response.headers["X-Bandit-Decision"], "reward": 1})
        before = Counter(r.headers["X-Bandit-Arm"] for r in responses)
        service.stop()
        service.start()
        # Decisions made before the restart can still be rewarded after it.
        for response in responses[20:]:
            answer = httpx.post(
                f"{service.url}/feedback", json={"decision": response.headers["X-Bandit-Decision"], "reward": 1}
            )
            assert answer.status_code == 202 and answer.json()["accepted"] == 1
        stats = httpx.get(f"{service.url}/api/experiments/{name}/stats", headers=headers).json()
        assert {arm["name"]: arm["decisions"] for arm in stats["arms"] if arm["decisions"]} == dict(before)
        assert stats["totals"]["rewards"] == 40
    finally:
        service.stop()
