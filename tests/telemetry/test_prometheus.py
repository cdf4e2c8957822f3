"""A real Prometheus (Debian's package) scrapes a running service; PromQL over its HTTP API
returns the decisions per arm that the stats endpoint reports."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bandit.cli.local_redis import free_port
from tests.conftest import experiment_body
from tests.servers import ModelServers, ServiceProcess, wait_until

PROMETHEUS = shutil.which("prometheus")
# scripts/test.sh installs it; in CI a missing one fails the test instead of skipping it.
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not os.environ.get("CI"), reason="prometheus is not installed (scripts/test.sh installs it)"
)


@pytest.fixture
def prometheus(service: ServiceProcess, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping `service` every second; its HTTP API's base URL."""
    assert PROMETHEUS is not None, "scripts/test.sh installs prometheus"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: mab\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{service.port}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 30, "prometheus ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_promql_gives_the_decisions_per_arm(
    prometheus: str, service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for _ in range(150):
            assert client.post(f"/invoke/{name}/predict", content=b"{}").status_code == 200
    promql = f'sum by (arm) (mab_decisions_total{{experiment="{name}"}})'
    found: dict[str, float] = {}

    def scraped_all() -> bool:
        nonlocal found
        found = {row["metric"]["arm"]: float(row["value"][1]) for row in query(prometheus, promql)}
        return sum(found.values()) == 150

    wait_until(scraped_all, 30, f"Prometheus to see 150 decisions of {name} (last: {found})")
    stats = admin.get(f"/api/experiments/{name}/stats").json()
    assert found == {arm["name"]: arm["decisions"] for arm in stats["arms"] if arm["decisions"]}
    # The scrape target is up, and the gauges of the shared state are there too.
    assert [row["value"][1] for row in query(prometheus, 'up{job="mab"}')] == ["1"]
    assert len(query(prometheus, f'mab_arm_allocation{{experiment="{name}"}}')) == 3
