"""Two replicas of two workers each on one Redis, model servers whose faults the tests switch."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bandit.cli.local_redis import start_redis
from loadtest.faults.rig import ModelProcess
from loadtest.traffic import Tally, run_traffic
from tests.servers import ADMIN_TOKEN, ServiceProcess, wait_until

#: Quick looks and one-second history buckets, so a guardrail window of 5 s holds five of them.
FAST_AUTOPILOT = {
    "BANDIT_WORKERS": "2",
    "BANDIT_AUTOPILOT_INTERVAL": "0.2",
    "BANDIT_SERIES_BUCKET": "1",
    "BANDIT_SERIES_BUCKETS": "600",
}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def faulty() -> Iterator[ModelProcess]:
    """Model versions good, bad (both rewarding 90 %) and poor (10 %), with the fault control API."""
    with ModelProcess(["good:0.9", "bad:0.9", "poor:0.1"], control=True).running() as models:
        yield models


@pytest.fixture(scope="module")
def autopilot_redis() -> Iterator[str]:
    """A redis-server of these tests' own: a replica acts on every experiment in its Redis, and the
    session's shared service, with other history buckets, would otherwise take their leases."""
    process, url = start_redis()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def pair(autopilot_redis: str, faulty: ModelProcess) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    first = ServiceProcess(autopilot_redis, **FAST_AUTOPILOT).start()
    second = ServiceProcess(autopilot_redis, **FAST_AUTOPILOT).start()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def admin(pair: tuple[ServiceProcess, ServiceProcess]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pair[0].url, headers=AUTH, timeout=30) as client:
        yield client


class Traffic:
    """Invokes with feedback against both replicas (half each) in background threads, until stopped."""

    def __init__(self, urls: list[str], name: str, rate_per_s: float = 100.0, seconds: float = 600.0) -> None:
        self.stop = threading.Event()
        self.tallies: list[Tally] = []
        self.threads = [
            threading.Thread(target=self._run, args=(url, name, rate_per_s / len(urls), seconds), daemon=True)
            for url in urls
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, url: str, name: str, rate: float, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.tallies.append(asyncio.run(run_traffic(url, name, duration_s=0.5, concurrency=4, rate_per_s=rate)))

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def audit(admin: httpx.Client, name: str) -> list[dict[str, Any]]:
    reply = admin.get(f"/api/experiments/{name}/audit", params={"limit": 1000})
    assert reply.status_code == 200, reply.text
    entries: list[dict[str, Any]] = reply.json()
    return entries


def actions(admin: httpx.Client, name: str, actor: str | None = None) -> list[tuple[str, str | None]]:
    """(action, arm) of the audit entries, of one actor or all but the operator's."""
    return [
        (entry["action"], entry["arm"])
        for entry in audit(admin, name)
        if (entry["actor"] == actor if actor else entry["actor"] != "operator")
    ]


def stats(admin: httpx.Client, name: str) -> dict[str, Any]:
    reply = admin.get(f"/api/experiments/{name}/stats")
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def arm_of(stats_body: dict[str, Any], arm: str) -> dict[str, Any]:
    found: dict[str, Any] = next(entry for entry in stats_body["arms"] if entry["name"] == arm)
    return found


def wait_for_action(admin: httpx.Client, name: str, action: str, arm: str | None, seconds: float) -> float:
    """Wait until the audit log holds `action` on `arm`; the seconds it took."""
    started = time.monotonic()
    wait_until(lambda: (action, arm) in actions(admin, name), seconds, f"{action} {arm} in the audit log")
    return time.monotonic() - started
