"""Sample-ratio checks: what the proxy expects each arm to get, and the tests that flag a mismatch."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import msgspec
import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.models import Experiment
from bandit.core.sample_ratio import decision_check, feedback_check
from bandit.store import keys
from loadtest.faults.rig import ModelProcess
from proxy.clients.base import Timeouts
from proxy.recorder import DecisionRecorder
from proxy.snapshot import Snapshot
from tests.autopilot.conftest import Traffic, arm_of, stats
from tests.servers import ServiceProcess, wait_until

RATES = (0.04, 0.05, 0.07)


def _experiment(policy: dict[str, object], arms: int = 3) -> Experiment:
    body = {
        "name": "srm",
        "arms": [{"name": f"v{i + 1}", "url": f"http://127.0.0.1:9/v{i + 1}"} for i in range(arms)],
        "policy": policy,
        "incarnation": "i1",
    }
    return msgspec.convert(body, Experiment)


def _counters(pulls: np.ndarray, sums: np.ndarray) -> ArmCounters:
    zeros = [np.zeros(len(pulls)) for _ in range(13)]
    counters = ArmCounters("i1", *zeros)
    return dataclasses.replace(counters, policy_pulls=pulls, policy_sum=sums, policy_sq_sum=sums, rewards=pulls)


def _thompson_run(seed: int, decisions: int = 3000, rebuild_every: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Thompson sampling routed as the proxy routes (real snapshots, rebuilt as rewards arrive,
    each reusing its predecessor's estimate while that one still holds), with the expected
    decisions booked as the recorder books them: each snapshot's allocation times its decisions."""
    rng = np.random.default_rng(seed)
    experiment = _experiment({"kind": "thompson"})
    pulls, sums = np.zeros(3), np.zeros(3)
    observed, expected = np.zeros(3), np.zeros(3)
    snapshot = Snapshot.build(experiment, _counters(pulls, sums), rng, Timeouts(2.0, 5.0))
    made = 0
    for index in range(decisions):
        arm = snapshot.choose()
        observed[arm] += 1
        made += 1
        reward = float(rng.random() < RATES[arm])
        pulls[arm] += 1
        sums[arm] += reward
        if (index + 1) % rebuild_every == 0:
            expected += made * snapshot.allocation
            made = 0
            snapshot = Snapshot.build(experiment, _counters(pulls, sums), rng, Timeouts(2.0, 5.0), snapshot)
    expected += made * snapshot.allocation
    return observed, expected


def test_twenty_healthy_thompson_runs_raise_at_most_one_false_alarm() -> None:
    checks = [decision_check(*_thompson_run(seed)) for seed in range(20)]
    assert all(check.p_value is not None for check in checks)
    assert sum(check.flagged for check in checks) <= 1


def test_a_check_against_the_starting_split_would_flag_every_healthy_run() -> None:
    # The check needs the allocation announced at each decision: against the split a learning
    # policy started from (uniform), the traffic it moved to the best arm is a "mismatch".
    for seed in range(5):
        observed, _expected = _thompson_run(seed)
        assert decision_check(observed, np.full(3, observed.sum() / 3)).flagged


def test_the_recorder_books_each_snapshots_allocation_per_decision() -> None:
    experiment = _experiment({"kind": "static", "weights": [1, 3]}, arms=2)
    snapshot = Snapshot.build(experiment, _counters(np.zeros(2), np.zeros(2)), np.random.default_rng(1), Timeouts(1, 1))
    recorder = DecisionRecorder(counters=None, flush_interval_s=1.0)  # type: ignore[arg-type]  # never flushed
    for _ in range(8):
        recorder.assigned(snapshot)
    asyncio.run(recorder._book_expected())
    fields = recorder._pending["srm", "i1"].counter_fields()
    assert fields == {
        keys.expected_field("v1"): 2 * keys.EXPECTED_SCALE,
        keys.expected_field("v2"): 6 * keys.EXPECTED_SCALE,
    }


def test_the_checks_flag_mismatches_and_pass_matches() -> None:
    assert not decision_check([5030, 4970], [5000, 5000]).flagged
    assert decision_check([5300, 4700], [5000, 5000]).flagged
    assert decision_check([10, 10], [10, 0]).reason  # an arm given no share served: flagged
    assert decision_check([3, 1], [2, 2]).p_value is None  # too few to tell
    assert not feedback_check([1000, 1000], [990, 985]).flagged
    assert feedback_check([1000, 1000], [990, 495]).flagged


def _static(name: str, models: ModelProcess) -> dict[str, object]:
    return {
        "name": name,
        "arms": [{"name": "good", "url": models.urls["good"]}, {"name": "bad", "url": models.urls["bad"]}],
        "policy": {"kind": "static", "weights": [0.5, 0.5]},
    }


def test_a_static_split_with_one_arm_ejected_part_of_the_time_is_flagged(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "srm-ejected"
    assert admin.post("/api/experiments", json=_static(name, faulty)).status_code == 201
    traffic = Traffic([service.url for service in pair], name, rate_per_s=150)
    try:
        wait_until(lambda: stats(admin, name)["totals"]["decisions"] > 300, 30, "healthy traffic")
        assert not stats(admin, name)["sample_ratio"]["decisions"]["flagged"]
        faulty.set_behaviour("bad", "error")  # passive health ejects it; its share goes to "good"
        wait_until(lambda: arm_of(stats(admin, name), "bad")["health"] != "healthy", 30, "bad ejected")
        faulty.set_behaviour("bad", "ok")
        wait_until(lambda: stats(admin, name)["sample_ratio"]["decisions"]["flagged"], 30, "the mismatch flagged")
    finally:
        traffic.join()
        faulty.set_behaviour("bad", "ok")
    body = stats(admin, name)
    good, bad = arm_of(body, "good"), arm_of(body, "bad")
    assert good["decisions"] > good["expected_decisions"] and bad["decisions"] < bad["expected_decisions"]
    assert body["sample_ratio"]["decisions"]["p_value"] < 0.001


def test_an_arm_whose_clients_report_half_as_often_is_flagged(
    admin: httpx.Client, pair: tuple[ServiceProcess, ServiceProcess], faulty: ModelProcess
) -> None:
    name = "srm-feedback"
    assert admin.post("/api/experiments", json=_static(name, faulty)).status_code == 201
    sent: dict[str, int] = {"good": 0, "bad": 0}
    with httpx.Client(base_url=pair[1].url, timeout=10) as client:
        for _ in range(600):
            answer = client.post(f"/invoke/{name}/predict", json={})
            arm = answer.headers["X-Bandit-Arm"]
            sent[arm] += 1
            # The clients of "bad" lose every other reward (a version that breaks them).
            if arm == "good" or sent[arm] % 2:
                feedback = {"decision": answer.headers["X-Bandit-Decision"], "reward": 1.0}
                assert client.post("/feedback", json=feedback).status_code == 202
    wait_until(lambda: stats(admin, name)["totals"]["decisions"] == 600, 10, "every decision counted")
    check = stats(admin, name)["sample_ratio"]
    assert check["feedback"]["flagged"] and check["feedback"]["p_value"] < 0.001
    assert not check["decisions"]["flagged"]
