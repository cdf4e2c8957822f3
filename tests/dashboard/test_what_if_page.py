"""The experiment page's "What if" panel: another policy estimated on the decision log."""

from __future__ import annotations

import json

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.conftest import experiment_body
from tests.dashboard.test_page_security import browser  # noqa: F401 (the module's Chromium fixture)
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

DECISIONS = 150


def _rewarded_lines(admin: httpx.Client, name: str) -> int:
    """How many logged decisions carry their reward."""
    reply = admin.get(f"/api/experiments/{name}/log")
    reply.raise_for_status()
    return sum(json.loads(line)["reward"] is not None for line in reply.text.splitlines())


def _open(chromium: Browser, service: ServiceProcess, name: str, errors: list[str]) -> Page:
    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{service.url}/dashboard/{name}")
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    page.fill("#token", ADMIN_TOKEN)
    page.dispatch_event("#token", "change")
    return page


def test_the_panel_shows_the_estimates_the_api_answers(
    browser: Browser,  # noqa: F811
    service: ServiceProcess,
    admin: httpx.Client,
    models: ModelServers,
    name: str,
) -> None:
    body = experiment_body(name, models, policy={"kind": "static", "weights": [1, 1, 1]}, log={})
    admin.post("/api/experiments", json=body).raise_for_status()
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for _ in range(DECISIONS):
            answer = client.post(f"/invoke/{name}/predict", json={})
            answer.raise_for_status()
            feedback = {"decision": answer.headers["X-Bandit-Decision"], "reward": float(answer.json()["outcome"])}
            assert client.post("/feedback", json=feedback).status_code == 202
    wait_until(lambda: _rewarded_lines(admin, name) == DECISIONS, 10, "every decision logged with its reward")

    errors: list[str] = []
    page = _open(browser, service, name, errors)
    page.select_option("#what-if-kind", "static")
    page.fill("#what-if-weights", "0,0,1")
    page.click("#what-if-run")

    rows = page.locator("#what-if-result tr")
    expect(rows).to_have_count(4, timeout=10_000)
    expect(rows.locator("td:first-child")).to_have_text(
        ["logged policy (observed)", "IPS", "self-normalised IPS", "doubly robust"]
    )
    candidate = {"policy": {"kind": "static", "weights": [0, 0, 1]}}
    expected = admin.post(f"/api/experiments/{name}/evaluate", json=candidate)
    assert expected.status_code == 200, expected.text
    result = expected.json()
    ips = page.locator('#what-if-result tr[data-estimate="ips"] td')
    assert float(ips.nth(1).text_content() or "nan") == float(f"{result['ips']['value']:.4g}")
    lower, upper = (float(bound) for bound in (ips.nth(2).text_content() or "").strip("[]").split(", "))
    assert (lower, upper) == (float(f"{result['ips']['lower']:.4g}"), float(f"{result['ips']['upper']:.4g}"))
    message = page.locator("#what-if-message")
    expect(message).to_contain_text(f"on {result['decisions']} decisions, effective sample size ")
    expect(message).to_contain_text("candidate shares: v1 0.0 %, v2 0.0 %, v3 100.0 %")
    page.close()
    assert errors == [], errors


def test_an_experiment_without_a_log_is_refused_as_text(
    browser: Browser,  # noqa: F811
    service: ServiceProcess,
    admin: httpx.Client,
    models: ModelServers,
    name: str,
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    errors: list[str] = []
    page = _open(browser, service, name, errors)
    page.select_option("#what-if-kind", "thompson")
    expect(page.locator("#what-if-weights")).to_be_hidden()
    page.click("#what-if-run")
    message = page.locator("#what-if-message")
    expect(message).to_contain_text("refused (422)", timeout=10_000)
    expect(message).to_contain_text("no decision log")
    expect(page.locator("#what-if-result tr")).to_have_count(0)
    page.close()
    assert errors == [], errors
