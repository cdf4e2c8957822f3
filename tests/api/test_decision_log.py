"""The decision log through a running service: what the proxy logged, exported, and evaluated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_manage import mab
from tests.conftest import experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until


def _traffic(service: ServiceProcess, name: str, count: int, unit: bool = False) -> dict[str, dict[str, Any]]:
    """`count` invokes, each rewarded with its outcome; what the client saw, by decision id."""
    seen = {}
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for index in range(count):
            headers = {"X-Bandit-Unit": f"user-{index % 7}"} if unit else {}
            answer = client.post(f"/invoke/{name}/predict", json={}, headers=headers)
            decision = answer.headers["X-Bandit-Decision"]
            reward = float(answer.json()["outcome"])
            assert client.post("/feedback", json={"decision": decision, "reward": reward}).status_code == 202
            seen[decision] = {
                "arm": answer.headers["X-Bandit-Arm"],
                "propensity": float(answer.headers["X-Bandit-Propensity"]),
                "reward": reward,
            }
    return seen


def _export(admin: httpx.Client, name: str, **params: Any) -> list[dict[str, Any]]:
    reply = admin.get(f"/api/experiments/{name}/log", params=params)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in reply.text.splitlines()]


def test_every_logged_decision_is_exported_once_with_its_propensity_and_reward(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    body = experiment_body(name, models, policy={"kind": "static", "weights": [0.2, 0.3, 0.5]}, log={})
    assert admin.post("/api/experiments", json=body).status_code == 201
    seen = _traffic(service, name, 400, unit=True)
    try:
        wait_until(lambda: len(_export(admin, name)) == 400, 10, "every decision logged")
    except TimeoutError:
        raise AssertionError(f"{len(_export(admin, name))} of 400 exported") from None
    rows = _export(admin, name)
    assert {row["decision"] for row in rows} == set(seen)
    arms = [arm["name"] for arm in body["arms"]]
    for row in rows:
        client_saw = seen[row["decision"]]
        assert row["arm"] == client_saw["arm"] and row["action"] == arms.index(row["arm"])
        assert row["propensity"] == pytest.approx(client_saw["propensity"], rel=1e-5)
        assert row["reward"] == client_saw["reward"] and row["policy_version"] == 1
        assert row["unit"].startswith("user-")
    assert [row["time"] for row in rows] == sorted(row["time"] for row in rows)
    since = rows[200]["time"]
    later = _export(admin, name, since=since)
    assert [row["decision"] for row in later] == [row["decision"] for row in rows if row["time"] >= since]
    assert 0 < len(later) <= 200


def test_evaluate_estimates_candidates_on_the_log_and_refuses_what_it_cannot_support(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    body = experiment_body(name, models, policy={"kind": "static", "weights": [1, 1, 1]}, log={})
    assert admin.post("/api/experiments", json=body).status_code == 201
    too_early = admin.post(f"/api/experiments/{name}/evaluate", json={"policy": {"kind": "static"}})
    assert too_early.status_code == 422 and "at least 100" in too_early.json()["detail"]
    seen = _traffic(service, name, 900)
    wait_until(lambda: len(_export(admin, name)) == 900, 10, "every decision logged")
    uniform = admin.post(f"/api/experiments/{name}/evaluate", json={"policy": {"kind": "static"}})
    assert uniform.status_code == 200, uniform.text
    result = uniform.json()
    observed = sum(entry["reward"] for entry in seen.values()) / len(seen)
    assert result["decisions"] == 900 and result["excluded"] == 0
    assert result["logged_mean"]["value"] == pytest.approx(observed)
    # The candidate is the logging policy: every weight is 1, so (S)IPS is the observed mean.
    propensities = {row["propensity"] for row in _export(admin, name)}
    for estimator in ("ips", "snips"):
        estimate = result[estimator]
        assert estimate["value"] == pytest.approx(observed, abs=1e-9), (estimator, propensities)
        assert estimate["lower"] < estimate["value"] < estimate["upper"]
    # Doubly robust: the arms' logged means under the candidate's shares, corrected by the weights.
    assert result["doubly_robust"]["lower"] < observed < result["doubly_robust"]["upper"]
    assert result["effective_sample_size"] == pytest.approx(900)
    best = admin.post(
        f"/api/experiments/{name}/evaluate", json={"policy": {"kind": "static", "weights": [0, 0, 1]}}
    ).json()
    assert best["candidate_allocation"] == {"v1": 0.0, "v2": 0.0, "v3": 1.0}
    assert best["effective_sample_size"] == pytest.approx(sum(e["arm"] == "v3" for e in seen.values()), rel=0.01)
    # The exported log, through the estimators' formulas written out, gives the same estimates.
    rows = _export(admin, name)
    target = [best["candidate_allocation"][arm["name"]] for arm in body["arms"]]
    weights = [target[row["action"]] / row["propensity"] for row in rows]
    rewards = [row["reward"] for row in rows]
    assert best["ips"]["value"] == pytest.approx(
        sum(w * r for w, r in zip(weights, rewards, strict=True)) / len(rows), abs=1e-6
    )
    snips = sum(w * r for w, r in zip(weights, rewards, strict=True)) / sum(weights)
    assert best["snips"]["value"] == pytest.approx(snips, abs=1e-6)
    bad = admin.post(f"/api/experiments/{name}/evaluate", json={"policy": {"kind": "static", "weights": [1]}})
    assert bad.status_code == 422 and "weights" in bad.json()["detail"]


def test_a_candidate_on_an_arm_the_log_never_saw_is_refused(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    body = experiment_body(name, models, policy={"kind": "static", "weights": [1, 1, 0]}, log={})
    assert admin.post("/api/experiments", json=body).status_code == 201
    _traffic(service, name, 150)
    wait_until(lambda: len(_export(admin, name)) == 150, 10, "every decision logged")
    refused = admin.post(f"/api/experiments/{name}/evaluate", json={"policy": {"kind": "static", "weights": [0, 0, 1]}})
    assert refused.status_code == 422 and "v3" in refused.json()["detail"]


def test_sampling_logs_a_share_of_decisions_and_no_log_is_a_clear_422(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    body = experiment_body(name, models, log={"sample": 0.5})
    assert admin.post("/api/experiments", json=body).status_code == 201
    _traffic(service, name, 400)
    wait_until(lambda: admin.get(f"/api/experiments/{name}/stats").json()["totals"]["rewards"] == 400, 10, "counted")
    rows = _export(admin, name)
    assert 140 < len(rows) < 260 and all(row["reward"] is not None for row in rows)
    unlogged = experiment_body(f"{name}-off", models)
    assert admin.post("/api/experiments", json=unlogged).status_code == 201
    missing = admin.get(f"/api/experiments/{name}-off/log")
    assert missing.status_code == 422 and "no decision log" in missing.json()["detail"]
    assert admin.get("/api/experiments/no-such-experiment/log").status_code == 404


def test_mab_export_writes_the_log_to_a_file_and_names_a_refusal(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str, tmp_path: Path
) -> None:
    body = experiment_body(name, models, log={})
    assert admin.post("/api/experiments", json=body).status_code == 201
    seen = _traffic(service, name, 120)
    wait_until(lambda: len(_export(admin, name)) == 120, 10, "every decision logged")
    target = tmp_path / "log.jsonl"
    ran = mab(service, "export", name, "-o", str(target))
    assert ran.code == 0 and "exported 120 decisions" in ran.err
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert {row["decision"] for row in rows} == set(seen)
    assert all({"action", "reward", "propensity"} <= set(row) for row in rows)
    missing = mab(service, "export", "no-such-experiment", "-o", str(tmp_path / "none.jsonl"))
    assert missing.code == 1 and "no-such-experiment" in missing.err
    assert not (tmp_path / "none.jsonl").exists()
