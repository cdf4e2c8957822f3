"""The dashboard pages' security headers, and the pages working under their Content Security Policy."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.conftest import experiment_body
from tests.dashboard.test_events import FAST_HISTORY, Traffic
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "plotly.css": "text/css; charset=utf-8",
    "plotly.min.js": "text/javascript; charset=utf-8",
}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
CHARTS = ["share", "mean", "pbest", "rate", "latency", "errors", "regret"]
# Every Content Security Policy violation of the page, as the browser reports it to the page.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => window.cspViolations.push(
  `${event.violatedDirective} blocked ${event.blockedURI} at ${event.sourceFile}:${event.lineNumber}`));
"""


def _page_paths(name: str) -> list[str]:
    return ["/dashboard", f"/dashboard/{name}"]


def test_every_page_carries_the_security_headers(service: ServiceProcess, name: str) -> None:
    for path in _page_paths(name):
        response = httpx.get(f"{service.url}{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert {header: response.headers.get(header) for header in PAGE_HEADERS} == PAGE_HEADERS, path


def test_every_asset_is_nosniff_with_its_own_media_type(service: ServiceProcess) -> None:
    for asset, media_type in ASSETS.items():
        response = httpx.get(f"{service.url}/dashboard/assets/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["x-content-type-options"] == "nosniff", asset
        assert response.headers["content-type"] == media_type, asset


class _Inline(HTMLParser):
    """What in a page the policy would refuse (inline script, style, handlers) or load from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.refused += [f"<{tag} {key}>" for key in attributes if key == "style" or key.startswith("on")]
        if tag == "style" or (tag == "script" and not attributes.get("src")):
            self.refused.append(f"inline <{tag}>")
        source = attributes.get("src") or (attributes.get("href") if tag == "link" else None)
        if source is not None:
            self.loaded.append(source)


def test_pages_have_nothing_inline_and_load_only_their_own_assets(service: ServiceProcess, name: str) -> None:
    for path in _page_paths(name):
        page = _Inline()
        page.feed(httpx.get(f"{service.url}{path}").text)
        assert page.refused == [], path
        # The empty favicon is the only `data:`; everything else is one of the assets.
        own = [source for source in page.loaded if source != "data:,"]
        assert own and all(source.removeprefix("/dashboard/assets/") in ASSETS for source in own), page.loaded


def _package_file(package: str, path: str) -> str:
    return resources.files(package).joinpath(path).read_text()


_JS_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_JS_PAIR = re.compile(rf"\s*({_JS_STRING}|[A-Za-z_$][\w$]*)\s*:\s*({_JS_STRING})\s*,?")


def _plotly_rules(bundle: str) -> list[str]:
    """The rules plotly.js adds to its inline stylesheet, as plotly.css writes them (build/plotcss.js:
    a table of selector -> declarations, X and Y standing for the plot's and notifier's classes)."""
    table = re.search(r'=\{("X,X div":.*?)\};for\(', bundle)
    assert table is not None, "plotly.js's table of style rules is not where this test looks for it"
    body, position, rules = table.group(1), 0, []
    while position < len(body):
        pair = _JS_PAIR.match(body, position)
        assert pair is not None, body[position : position + 80]
        key, declarations = pair.group(1), pair.group(2)[1:-1]
        selector = (key[1:-1] if key[0] in "\"'" else key).replace("X", ".js-plotly-plot .plotly")
        rules.append(f"{re.sub(r'^,', ' ,', selector).replace('Y', '.plotly-notifier')} {{ {declarations} }}")
        position = pair.end()
    return rules


def test_plotly_css_holds_the_rules_plotly_js_would_inline() -> None:
    bundle = _package_file("plotly", "package_data/plotly.min.js")
    expected = "\n".join(reversed(_plotly_rules(bundle)))  # plotly.js inserts each at the top of its sheet
    ours = _package_file("bandit.dashboard.static", "plotly.css").splitlines()
    served = "\n".join(line for line in ours if line.startswith((".js-plotly-plot", ".plotly-notifier")))
    assert served == expected, f"bandit/dashboard/static/plotly.css must hold plotly.js's rules:\n{expected}"
    # The map library's stylesheet is added unless an element has its id: the page has one.
    skipped = re.search(
        r'document\.getElementById\("([0-9a-f]{64})"\)\)\{var e=document\.createElement\("style"\)', bundle
    )
    assert skipped is not None, "plotly.js no longer adds the map library's stylesheet this way"
    assert f'id="{skipped.group(1)}"' in _package_file("bandit.dashboard.static", "experiment.html")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test.sh installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_the_pages_work_under_their_policy_without_a_violation(
    browser: Browser, clean_test_db: str, models: ModelServers, name: str
) -> None:
    service = ServiceProcess(clean_test_db, **FAST_HISTORY).start()
    admin = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    try:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        traffic = Traffic(service.url, name, seconds=6)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.add_init_script(RECORD_VIOLATIONS)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        # plotly.js warns on the console when a policy keeps it from adding its styles.
        page.on("console", lambda message: problems.append(message.text) if "CSP" in message.text else None)

        page.goto(f"{service.url}/dashboard")
        expect(page.locator(f'#experiments tr[data-experiment="{name}"]')).to_be_visible(timeout=10_000)
        assert page.evaluate("window.cspViolations") == []

        answer = page.goto(f"{service.url}/dashboard/{name}")
        assert answer is not None and answer.headers["content-security-policy"] == CSP
        expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
        for arm in models.urls:
            expect(page.locator(f'#arms tr[data-arm="{arm}"]')).to_be_visible(timeout=10_000)
        for chart in CHARTS:
            expect(page.locator(f"#chart-{chart} .main-svg").first).to_be_visible()
        # plotly.css styles the charts' tool bar: in the corner, hidden until the chart is hovered.
        tools = page.locator("#chart-rate .modebar-group").first
        expect(page.locator("#chart-rate .modebar")).to_have_css("position", "absolute")
        expect(tools).to_have_css("opacity", "0")
        page.hover("#chart-rate")
        expect(tools).to_have_css("opacity", "1")
        # The controls' form is never submitted: a refused control leaves the page where it is.
        page.click("#pause")
        expect(page.locator("#control-message")).to_have_text(re.compile(r"refused \(401\)"))
        assert page.url == f"{service.url}/dashboard/{name}"
        assert page.evaluate("window.cspViolations") == []
        assert problems == []
        traffic.join()
        page.close()
    finally:
        admin.close()
        service.stop()
