"""Bad guardrail, canary and stopping settings are refused with a 422 naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import experiment_body
from tests.servers import ModelServers


def _canary(**policy: Any) -> dict[str, Any]:
    return {"kind": "canary", "baseline": "v1", "candidate": "v2", **policy}


BAD_SETTINGS = [
    ({"policy": _canary(steps=[5, 1, 100])}, "policy.steps must increase"),
    ({"policy": _canary(steps=[0, 50, 100])}, "percentages in (0, 100]"),
    ({"policy": _canary(steps=[5, 50])}, "must end at 100"),
    ({"policy": _canary(candidate="v9")}, "policy.candidate 'v9' is not an arm"),
    ({"policy": _canary(candidate="v1")}, "another arm than policy.baseline"),
    ({"policy": _canary(step_interval_s=0)}, "step_interval_s"),
    ({"policy": _canary(max_reward_drop=-1)}, "max_reward_drop"),
    ({"guardrails": {"max_error_rate": 1.5}}, "max_error_rate"),
    ({"guardrails": {"max_error_rate": 0}}, "max_error_rate"),
    ({"guardrails": {"max_p99_ms": -3}}, "max_p99_ms"),
    ({"guardrails": {"min_decisions": 200}}, "max_error_rate, max_p99_ms or both"),
    ({"guardrails": {"max_error_rate": 0.02, "retry_share": 0.9}}, "retry_share"),
    ({"guardrails": {"max_error_rate": 0.02, "action": "explode"}}, "action"),
    ({"guardrails": {"max_error_rate": 0.02, "arms": ["v3"]}}, "guardrails.arms: 'v3' is a shadow arm"),
    ({"guardrails": {"max_error_rate": 0.02, "control": "v3"}}, "guardrails.control 'v3' is a shadow arm"),
    ({"policy": _canary(baseline="v3")}, "policy.baseline 'v3' is a shadow arm"),
    ({"guardrails": {"max_error_rate": 0.02, "arms": ["nope"]}}, "'nope' is not an arm"),
    ({"stopping": {"action": "celebrate"}}, "stopping.action"),
]


@pytest.mark.parametrize(("change", "named"), BAD_SETTINGS)
def test_bad_settings_are_refused_naming_the_field(
    admin: httpx.Client, models: ModelServers, name: str, change: dict[str, Any], named: str
) -> None:
    body = experiment_body(name, models) | change
    body["arms"][2] |= {"shadow": True}  # v3 shadows: a canary routes between v1 and v2 only
    created = admin.post("/api/experiments", json=body)
    assert created.status_code == 422, created.text
    assert named in created.json()["detail"], created.json()["detail"]


def test_a_patch_with_bad_guardrails_is_refused_and_guardrails_can_be_removed(
    admin: httpx.Client, models: ModelServers, name: str
) -> None:
    assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
    refused = admin.patch(f"/api/experiments/{name}", json={"guardrails": {"max_error_rate": 2}})
    assert refused.status_code == 422 and "max_error_rate" in refused.json()["detail"]
    added = admin.patch(f"/api/experiments/{name}", json={"guardrails": {"max_p99_ms": 100}})
    assert added.status_code == 200 and added.json()["guardrails"]["max_p99_ms"] == 100
    removed = admin.patch(f"/api/experiments/{name}", json={"guardrails": None})
    assert removed.status_code == 200 and removed.json()["guardrails"] is None
    log = admin.get(f"/api/experiments/{name}/audit").json()
    assert [(entry["actor"], entry["action"]) for entry in log] == [("operator", "created")] + [
        ("operator", "updated")
    ] * 2
    too_few = admin.get(f"/api/experiments/{name}/audit", params={"limit": 0})
    assert too_few.status_code == 422 and "limit" in too_few.text
    assert admin.get("/api/experiments/no-such-experiment/audit").status_code == 404
