"""Guardrails on real upstreams, judged from two replicas' (two workers each) shared counts."""

from __future__ import annotations

import itertools
import time

import httpx

from loadtest.faults.rig import ModelProcess
from tests.autopilot.conftest import Traffic, actions, arm_of, stats, wait_for_action
from tests.servers import ServiceProcess, wait_until


def _experiment(name: str, models: ModelProcess, **guardrails: object) -> dict[str, object]:
    return {
        "name": name,
        "arms": [{"name": "good", "url": models.urls["good"]}, {"name": "bad", "url": models.urls["bad"]}],
        "policy": {"kind": "static", "weights": [0.5, 0.5]},
        "guardrails": {"min_decisions": 50, "window_s": 5, "cooldown_s": 3, "retry_share": 0.25, **guardrails},
    }


def _decisions(admin: httpx.Client, name: str, arm: str) -> int:
    return int(arm_of(stats(admin, name), arm)["decisions"])


def _cap_and_heal(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess, name: str
) -> None:
    """With the fault on: capped, the cap holds (next to no traffic), a trial; fault off: restored."""
    traffic = Traffic([service.url for service in pair], name, rate_per_s=100)
    try:
        wait_for_action(admin, name, "capped", "bad", 30)
        capped = arm_of(stats(admin, name), "bad")["guardrail"]
        assert capped["state"] == "breached" and capped["serving"] == "capped"
        assert capped["figures"]["breached"] and capped["figures"]["reason"]
        # Capped: the snapshots of both replicas stop sending it traffic within their refresh.
        time.sleep(0.5)
        before, good_before = _decisions(admin, name, "bad"), _decisions(admin, name, "good")
        time.sleep(1.5)
        assert _decisions(admin, name, "bad") - before <= 2
        assert _decisions(admin, name, "good") - good_before > 50
        # After the cool-down, a trial at 25 % that breaches again: capped again, for twice as long.
        try:
            wait_until(lambda: actions(admin, name).count(("capped", "bad")) >= 2, 30, "capped again after its trial")
        except TimeoutError:
            raise AssertionError((actions(admin, name), arm_of(stats(admin, name), "bad"))) from None
        assert ("retrying", "bad") in actions(admin, name)
        faulty.set_behaviour("bad", "ok")
        wait_for_action(admin, name, "restored", "bad", 40)
        restored = arm_of(stats(admin, name), "bad")["guardrail"]
        assert restored["serving"] == "full"
        before = _decisions(admin, name, "bad")
        time.sleep(1.5)
        assert _decisions(admin, name, "bad") - before > 30  # its half of the traffic again
    finally:
        traffic.join()
        faulty.set_behaviour("bad", "ok")
    # Two replicas of two workers each looked every 0.2 s: each step is in the log once.
    log = actions(admin, name, "guardrail")
    steps = [action for action, _arm in log]
    assert all(arm == "bad" for _action, arm in log)
    assert steps[0] == "capped" and steps[-1] == "restored"
    for first, then in itertools.pairwise(steps):
        assert (first, then) in {("capped", "retrying"), ("retrying", "capped"), ("retrying", "restored")}, steps


def test_an_arm_failing_a_tenth_of_its_requests_is_capped_retried_and_restored_once_healed(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "guard-errors"
    faulty.set_behaviour("bad", "error", error_share=0.1)
    assert admin.post("/api/experiments", json=_experiment(name, faulty, max_error_rate=0.02)).status_code == 201
    _cap_and_heal(admin, pair, faulty, name)


def test_an_arm_300_ms_slow_under_a_250_ms_p99_is_capped_and_restored_once_fast(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "guard-latency"
    faulty.set_behaviour("bad", "slow", delay_ms=300)
    assert admin.post("/api/experiments", json=_experiment(name, faulty, max_p99_ms=250)).status_code == 201
    _cap_and_heal(admin, pair, faulty, name)


def test_a_healthy_arm_is_never_capped_and_its_figures_are_shown(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "guard-healthy"
    body = _experiment(name, faulty, max_error_rate=0.02, max_p99_ms=250)
    assert admin.post("/api/experiments", json=body).status_code == 201
    traffic = Traffic([service.url for service in pair], name, rate_per_s=100)
    try:
        wait_until(
            lambda: all(
                (arm_of(stats(admin, name), arm)["guardrail"]["figures"] or {}).get("judged") for arm in ("good", "bad")
            ),
            30,
            "both arms judged",
        )
        time.sleep(3)
    finally:
        traffic.join()
    for arm in ("good", "bad"):
        shown = arm_of(stats(admin, name), arm)["guardrail"]
        assert shown["state"] == "ok" and shown["serving"] == "full"
        assert shown["figures"]["requests"] >= 50 and shown["figures"]["p_error_rate_above"] < 0.95
    assert actions(admin, name) == []


def test_rollback_action_sends_all_traffic_to_the_control_arm(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "guard-rollback"
    faulty.set_behaviour("bad", "error", error_share=0.3)
    body = _experiment(name, faulty, max_error_rate=0.02, action="rollback", control="good")
    assert admin.post("/api/experiments", json=body).status_code == 201
    traffic = Traffic([service.url for service in pair], name, rate_per_s=100)
    try:
        wait_for_action(admin, name, "rolled_back", "bad", 30)
    finally:
        traffic.join()
        faulty.set_behaviour("bad", "ok")
    experiment = admin.get(f"/api/experiments/{name}").json()
    assert experiment["status"] == "paused" and experiment["changed_by"] == "guardrail"
    # Paused on its control arm: every request goes to "good".
    with httpx.Client(base_url=pair[1].url, timeout=10) as client:
        time.sleep(0.5)
        assert {client.post(f"/invoke/{name}/predict", json={}).headers["X-Bandit-Arm"] for _ in range(20)} == {"good"}
    assert actions(admin, name, "guardrail") == [("rolled_back", "bad")]
