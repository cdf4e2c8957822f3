"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import experiment_body
from tests.dashboard.test_events import FAST_HISTORY, Traffic
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

CHROMIUM = "/usr/bin/chromium"
# Never `playwright install`: the browser is the distribution's, started with these flags.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHARTS = ["share", "mean", "pbest", "rate", "latency", "errors", "regret"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is not installed (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def dashboard_service(clean_test_db: str, models: ModelServers) -> Iterator[ServiceProcess]:
    service = ServiceProcess(clean_test_db, **FAST_HISTORY).start()
    yield service
    service.stop()


def _allocations(page: Page) -> dict[str, str]:
    cells = page.locator("#arms tbody tr")
    return {
        row.get_attribute("data-arm") or "": row.locator("td.allocation").inner_text()
        for row in (cells.nth(i) for i in range(cells.count()))
    }


def _traffic_points(page: Page) -> int:
    """How many history buckets the traffic-share chart draws."""
    return int(page.evaluate("document.getElementById('chart-share').data[0].x.length"))


def test_dashboard_shows_the_experiment_live_and_guards_its_controls(
    browser: Browser, dashboard_service: ServiceProcess, models: ModelServers, name: str, tmp_path: Path
) -> None:
    service = dashboard_service
    body = experiment_body(name, models)
    body["arms"].append({"name": "candidate", "url": models.urls["v3"], "shadow": True, "mirror_percent": 50})
    admin = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    admin.post("/api/experiments", json=body).raise_for_status()
    traffic = Traffic(service.url, name, seconds=14)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # The overview lists the experiment with a link to its page.
    page.goto(f"{service.url}/dashboard")
    row = page.locator(f'#experiments tr[data-experiment="{name}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row).to_contain_text("running")
    row.get_by_role("link", name=name).click()
    page.wait_for_url(f"**/dashboard/{name}")

    # Every serving arm in the table, the shadow arm apart, every chart drawn by plotly.
    for arm in models.urls:
        expect(page.locator(f'#arms tr[data-arm="{arm}"]')).to_be_visible(timeout=10_000)
    expect(page.locator('#shadow-arms tr[data-arm="candidate"]')).to_be_visible()
    expect(page.locator('#arms tr[data-arm="candidate"]')).to_have_count(0)
    for chart in CHARTS:
        expect(page.locator(f"#chart-{chart} .main-svg").first).to_be_visible()
        assert page.locator(f"#chart-{chart} .trace").count() > 0, f"chart {chart} has no trace"

    # The shown allocation and history change as traffic flows, without a reload.
    before, points_before = _allocations(page), _traffic_points(page)
    wait_until(lambda: _allocations(page) != before, 8, "the shown allocation changed")
    wait_until(lambda: _traffic_points(page) > points_before, 8, "the traffic chart gained points")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # A control without the token is refused, and nothing changes...
    page.click("#pause")
    expect(page.locator("#control-message")).to_have_text(re.compile(r"refused \(401\)"))
    assert admin.get(f"/api/experiments/{name}").json()["status"] == "running"
    page.fill("#token", "not-the-token")
    page.click("#pause")
    expect(page.locator("#control-message")).to_have_text(re.compile(r"refused \(403\)"))
    assert admin.get(f"/api/experiments/{name}").json()["status"] == "running"
    # ...with it, it takes effect, and the page shows it from the stream.
    page.fill("#token", ADMIN_TOKEN)
    page.click("#pause")
    expect(page.locator("#control-message")).to_have_text(re.compile("paused"))
    assert admin.get(f"/api/experiments/{name}").json()["status"] == "paused"
    expect(page.locator("#status")).to_have_text("paused", timeout=5_000)

    page.select_option("#promote-arm", "v2")
    page.click("#promote")
    expect(page.locator("#control-message")).to_have_text(re.compile("promoted v2"))
    assert admin.get(f"/api/experiments/{name}").json()["promoted_arm"] == "v2"
    page.click("#rollback")
    expect(page.locator("#control-message")).to_have_text(re.compile("rolled back"))
    assert admin.get(f"/api/experiments/{name}").json()["status"] == "paused"

    for arm, weight in {"v1": "0", "v2": "1", "v3": "3"}.items():
        page.fill(f"#weight-{arm}", weight)
    page.click("#apply-weights")
    expect(page.locator("#control-message")).to_have_text(re.compile("static weights set"))
    assert admin.get(f"/api/experiments/{name}").json()["policy"] == {"kind": "static", "weights": [0, 1, 3, 0]}
    expect(page.locator("#policy")).to_have_text("static", timeout=5_000)

    traffic.join()
    admin.close()
    page.close()
    assert errors == [], errors
