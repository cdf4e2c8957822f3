"""Progressive canaries and auto-promotion, acted on once across two replicas."""

from __future__ import annotations

import itertools
import time

import httpx

from loadtest.faults.rig import ModelProcess
from tests.autopilot.conftest import Traffic, actions, stats, wait_for_action
from tests.servers import ServiceProcess, wait_until


def _canary(name: str, models: ModelProcess, candidate: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "arms": [{"name": "good", "url": models.urls["good"]}, {"name": candidate, "url": models.urls[candidate]}],
        "policy": {
            "kind": "canary",
            "baseline": "good",
            "candidate": candidate,
            "steps": [10, 30, 60, 100],
            "step_interval_s": 1.5,
            "min_decisions": 20,
            "max_reward_drop": 0.15,
        },
        **extra,
    }


def test_a_healthy_canary_walks_every_step_to_promotion_each_step_logged_once(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "canary-walk"
    # "bad" rewards as "good" does (90 %) and is healthy here: the candidate that should pass.
    assert admin.post("/api/experiments", json=_canary(name, faulty, "bad")).status_code == 201
    shown = stats(admin, name)["canary"]
    assert shown["step"] == 0 and shown["candidate_share"] == 10 and shown["state"] == "waiting"
    traffic = Traffic([service.url for service in pair], name, rate_per_s=120)
    try:
        wait_until(lambda: admin.get(f"/api/experiments/{name}").json()["status"] == "promoted", 90, "promoted")
    finally:
        traffic.join()
    experiment = admin.get(f"/api/experiments/{name}").json()
    assert experiment["promoted_arm"] == "bad" and experiment["changed_by"] == "canary"
    log = [entry for entry in admin.get(f"/api/experiments/{name}/audit").json() if entry["actor"] == "canary"]
    assert [(entry["action"], entry["figures"].get("share")) for entry in log] == [
        ("canary_step", 30),
        ("canary_step", 60),
        ("canary_promoted", None),
    ]
    # Each step waited its interval and had the decisions it needs.
    times = [experiment["created_at"]] + [entry["at"] for entry in log]
    assert all(later - earlier >= 1.5 for earlier, later in itertools.pairwise(times))
    assert all(entry["figures"]["decisions_in_step"] >= 20 for entry in log)
    assert stats(admin, name)["canary"]["state"] == "promoted"


def test_a_canary_whose_reward_is_clearly_worse_aborts_at_its_first_step(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "canary-worse"
    assert admin.post("/api/experiments", json=_canary(name, faulty, "poor")).status_code == 201
    traffic = Traffic([service.url for service in pair], name, rate_per_s=120)
    try:
        wait_for_action(admin, name, "canary_aborted", "poor", 60)
        time.sleep(0.5)  # both replicas route the aborted settings by now
        before = {arm["name"]: arm["decisions"] for arm in stats(admin, name)["arms"]}
        time.sleep(1.0)
        after = {arm["name"]: arm["decisions"] for arm in stats(admin, name)["arms"]}
    finally:
        traffic.join()
    assert actions(admin, name) == [("canary_aborted", "poor")]
    assert admin.get(f"/api/experiments/{name}").json()["status"] == "aborted"
    shown = stats(admin, name)["canary"]
    assert shown["state"] == "aborted" and shown["candidate_share"] == 0 and shown["step"] == 0
    assert after["poor"] - before["poor"] <= 2 and after["good"] - before["good"] > 50


def test_a_canary_whose_candidate_breaches_its_guardrails_aborts(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "canary-errors"
    guardrails = {"max_error_rate": 0.02, "min_decisions": 20, "window_s": 5}
    faulty.set_behaviour("bad", "error", error_share=0.3)
    body = _canary(name, faulty, "bad", guardrails=guardrails)
    assert admin.post("/api/experiments", json=body).status_code == 201
    traffic = Traffic([service.url for service in pair], name, rate_per_s=120)
    try:
        wait_for_action(admin, name, "canary_aborted", "bad", 60)
    finally:
        traffic.join()
        faulty.set_behaviour("bad", "ok")
    log = [entry for entry in admin.get(f"/api/experiments/{name}/audit").json() if entry["actor"] != "operator"]
    assert [(entry["actor"], entry["action"]) for entry in log] == [("guardrail", "canary_aborted")]
    assert "error rate" in log[0]["reason"] and log[0]["figures"]["errors"] > 0


def test_auto_promote_acts_once_and_a_rollback_undoes_it_for_good(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "auto-promote"
    body = {
        "name": name,
        "arms": [{"name": "poor", "url": faulty.urls["poor"]}, {"name": "good", "url": faulty.urls["good"]}],
        "policy": {"kind": "thompson"},
        "stopping": {"p_best": 0.95, "expected_loss": 0.01, "action": "promote"},
    }
    assert admin.post("/api/experiments", json=body).status_code == 201
    traffic = Traffic([service.url for service in pair], name, rate_per_s=100)
    try:
        wait_for_action(admin, name, "promoted", "good", 60)
        promoted = admin.get(f"/api/experiments/{name}").json()
        assert promoted["status"] == "promoted" and promoted["promoted_arm"] == "good"
        rolled_back = admin.post(f"/api/experiments/{name}/rollback")
        assert rolled_back.status_code == 200 and rolled_back.json()["status"] == "running"
        assert rolled_back.json()["autopilot_held"] is True
        time.sleep(2.0)  # the rule still holds, but an operator undid the promotion: it stays undone
        assert admin.get(f"/api/experiments/{name}").json()["status"] == "running"
        assert stats(admin, name)["autopilot"]["held"] is True
        # Resuming hands the experiment back to the autopilot, which promotes again.
        assert admin.post(f"/api/experiments/{name}/resume").status_code == 200
        wait_until(lambda: actions(admin, name, "stopping").count(("promoted", "good")) == 2, 30, "promoted again")
    finally:
        traffic.join()
    assert actions(admin, name, "stopping") == [("promoted", "good"), ("promoted", "good")]
    operator = [
        entry["action"] for entry in admin.get(f"/api/experiments/{name}/audit").json() if entry["actor"] == "operator"
    ]
    assert operator == ["created", "rolled_back", "resumed"]
