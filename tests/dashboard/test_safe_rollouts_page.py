"""The experiment page's safe-rollout parts: the audit log route and panel, guardrail badges, warnings."""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.sync_api import Browser, Route, expect

from tests.conftest import experiment_body
from tests.dashboard.test_events import read_events
from tests.dashboard.test_page_security import browser  # noqa: F401 (the module's Chromium fixture)
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess


def _audit_path(name: str) -> str:
    return f"/dashboard/data/experiments/{name}/audit"


def test_the_audit_route_lists_the_creation_and_404s_a_missing_experiment(
    admin: httpx.Client, models: ModelServers, name: str
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    answer = admin.get(_audit_path(name))
    assert answer.status_code == 200
    entries = answer.json()
    assert [entry["action"] for entry in entries] == ["created"]
    assert entries[0]["actor"] == "operator"

    missing = admin.get(_audit_path(f"{name}-missing"))
    assert missing.status_code == 404


def test_the_page_shows_the_guardrails_and_the_audit_log(
    browser: Browser,  # noqa: F811
    service: ServiceProcess,
    admin: httpx.Client,
    models: ModelServers,
    name: str,
) -> None:
    body = experiment_body(name, models, guardrails={"max_error_rate": 0.02})
    admin.post("/api/experiments", json=body).raise_for_status()
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{service.url}/dashboard/{name}")
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    for arm in models.urls:
        guardrail = page.locator(f'#arms tr[data-arm="{arm}"] td.guardrail')
        expect(guardrail.locator(".badge.ok")).to_have_text("ok", timeout=10_000)
    expect(page.locator("#srm-warning")).to_be_hidden()
    expect(page.locator("#autopilot")).to_be_hidden()
    expect(page.locator("#canary")).to_be_hidden()
    expect(page.locator('#audit-log tbody tr[data-action="created"]')).to_contain_text("operator")

    # A change shows up in the log at its next refresh (every 5 s), newest first.
    admin.post(f"/api/experiments/{name}/pause").raise_for_status()
    expect(page.locator("#audit-log tbody tr").first).to_contain_text("paused", timeout=10_000)
    expect(page.locator("#status")).to_have_text("paused", timeout=5_000)
    page.close()
    assert errors == [], errors


# User data in a reason: shown as text, never parsed as markup.
MARKUP = '<img src="x" id="injected">'


def _unsafe(stats: dict[str, Any]) -> dict[str, Any]:
    """The stats of an aborted canary whose candidate breached, with a sample ratio mismatch."""
    figures = {
        "breached": True,
        "judged": True,
        "window_s": 60,
        "requests": 400,
        "errors": 40,
        "error_rate": 0.1,
        "p_error_rate_above": 0.99,
        "answers": 360,
        "p99_ms": 812.0,
        "slower_answers": None,
        "p_p99_above": None,
        "reason": f"error rate above 2 % {MARKUP}",
    }
    arm = stats["arms"][1]
    arm["guardrail"] = {
        "state": "breached",
        "serving": "capped",
        "since": 1.0,
        "until": None,
        "figures": figures,
        "judged_at": 2.0,
    }
    check = {"p_value": 0.00002, "flagged": True, "reason": None}
    return {
        **stats,
        "status": "aborted",
        "sample_ratio": {"decisions": check, "feedback": {"p_value": 0.5, "flagged": False, "reason": None}},
        "canary": {
            "step": 1,
            "steps": [0.05, 0.25, 1.0],
            "candidate_share": 0.0,
            "step_started_at": 1.0,
            "decisions_in_step": 10,
            "state": "aborted",
            "p_not_worse": 0.125,
            "reason": MARKUP,
        },
        "autopilot": {"held": True, "judged_at": 2.0},
    }


def test_the_page_shows_breaches_mismatches_and_canaries_as_text(
    browser: Browser,  # noqa: F811
    service: ServiceProcess,
    admin: httpx.Client,
    models: ModelServers,
    name: str,
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    events_url = f"{service.url}/api/experiments/{name}/events"
    snapshot = next(data for _, kind, data in read_events(events_url, seconds=1) if kind == "snapshot")
    snapshot.pop("_id")
    snapshot["stats"] = _unsafe(snapshot["stats"])
    stream = f"event: snapshot\ndata: {json.dumps(snapshot)}\n\n"

    def fulfill(route: Route) -> None:
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=stream)

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route(f"**/api/experiments/{name}/events", fulfill)
    page.goto(f"{service.url}/dashboard/{name}")

    warning = page.locator("#srm-warning")
    expect(warning).to_be_visible(timeout=10_000)
    expect(warning).to_have_text("Sample ratio mismatch: decisions p = 2.0e-5")
    expect(page.locator("#status")).to_have_text("aborted")
    expect(page.locator("#autopilot")).to_contain_text("held until resumed")
    expect(page.locator("#canary")).to_have_text(
        f"Canary: step 2 of 3, 0.0 % to candidate, aborted, P(not worse) 12.5 % — {MARKUP}"
    )
    breached = page.locator(f'#arms tr[data-arm="{snapshot["stats"]["arms"][1]["name"]}"] td.guardrail')
    expect(breached.locator(".badge")).to_have_text(["breached", "capped"])
    expect(breached).to_contain_text("errors 10.00 % · p99 812 ms")
    expect(breached).to_have_attribute("title", f"error rate above 2 % {MARKUP}")
    expect(page.locator("#injected")).to_have_count(0)
    page.close()
    assert errors == [], errors


def test_a_private_dashboard_wants_the_admin_token_for_the_audit_log(
    clean_test_db: str, models: ModelServers, name: str
) -> None:
    service = ServiceProcess(clean_test_db, BANDIT_DASHBOARD_PUBLIC="false").start()
    try:
        token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=service.url, timeout=30) as client:
            client.post("/api/experiments", json=experiment_body(name, models), headers=token).raise_for_status()
            assert client.get(_audit_path(name)).status_code == 401
            assert client.get(_audit_path(name), headers={"Authorization": "Bearer nope"}).status_code == 403
            answer = client.get(_audit_path(name), headers=token)
            assert answer.status_code == 200
            assert [entry["action"] for entry in answer.json()] == ["created"]
    finally:
        service.stop()
