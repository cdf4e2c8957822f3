"""The live stream, the overview and the controls, through a running service with traffic."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loadtest.traffic import run_traffic
from tests.conftest import Backend, experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

# One-second buckets, so a short test sees several of them.
FAST_HISTORY = {"BANDIT_SERIES_BUCKET": "1", "BANDIT_SERIES_BUCKETS": "600"}


@pytest.fixture(scope="module")
def replicas(backend: Backend, models: ModelServers) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two replicas sharing only Redis: one Redis, or a Redis Cluster (each test runs on both)."""
    first = ServiceProcess(backend.url, **FAST_HISTORY, **backend.settings).start()
    second = ServiceProcess(backend.url, **FAST_HISTORY, **backend.settings).start()
    yield first, second
    first.stop()
    second.stop()


def _admin(service: ServiceProcess) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


class Traffic:
    """Invokes with feedback against a service in a background thread until stopped."""

    def __init__(self, url: str, name: str, seconds: float) -> None:
        self.thread = threading.Thread(
            target=lambda: asyncio.run(run_traffic(url, name, duration_s=seconds, concurrency=4, rate_per_s=200)),
            daemon=True,
        )
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=60)


def read_events(url: str, seconds: float, last_event_id: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
    """(arrival time, event type, data) of every event within `seconds` of one connection."""
    events: list[tuple[float, str, dict[str, Any]]] = []
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event_type, data, event_id = "message", "", None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event_type = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data += line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                event_id = line.split(":", 1)[1].strip()
            elif line == "" and data:
                events.append((time.monotonic(), event_type, {**json.loads(data), "_id": event_id}))
                event_type, data = "message", ""
            if time.monotonic() > deadline:
                break
    return events


def test_events_stream_a_snapshot_every_second_and_resume_after_a_reconnect(
    replicas: tuple[ServiceProcess, ServiceProcess], models: ModelServers, name: str
) -> None:
    service, _ = replicas
    with _admin(service) as admin:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    traffic = Traffic(service.url, name, seconds=9)
    url = f"{service.url}/api/experiments/{name}/events"  # no token: the dashboard is public by default

    first = read_events(url, seconds=4.2)
    snapshots = [data for _, kind, data in first if kind == "snapshot"]
    arrivals = [at for at, kind, _ in first if kind == "snapshot"]
    # At least one snapshot a second, and no gap over 1.5 s between them, while traffic flows.
    assert len(snapshots) >= 4, [kind for _, kind, _ in first]
    assert max(b - a for a, b in itertools.pairwise(arrivals)) < 1.5
    assert {arm["name"] for arm in snapshots[-1]["stats"]["arms"]} == set(models.urls)
    decisions = [s["stats"]["totals"]["decisions"] for s in snapshots]
    assert decisions[-1] > decisions[0], "the totals do not move while traffic flows"
    # The first event carries the history so far; each later one starts at the newest bucket
    # the previous one sent (that bucket was still filling), so nothing is skipped or resent.
    for previous, following in itertools.pairwise(snapshots):
        assert following["series"]["t"][0] == previous["series"]["t"][-1]

    # A reconnecting browser sends the last id it saw: the stream resumes from that bucket.
    last_id = snapshots[-1]["_id"]
    resumed_from = float(last_id.split(":")[1])
    time.sleep(1.2)
    second = [data for _, kind, data in read_events(url, seconds=2.2, last_event_id=last_id) if kind == "snapshot"]
    assert len(second) >= 2
    assert second[0]["series"]["t"][0] == resumed_from
    assert second[-1]["stats"]["totals"]["decisions"] > decisions[-1]
    traffic.join()


def test_history_is_in_redis_the_same_from_every_replica(
    replicas: tuple[ServiceProcess, ServiceProcess], models: ModelServers, name: str
) -> None:
    first, second = replicas
    with _admin(first) as admin:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        # Traffic through both replicas, so each adds its own counts to the shared buckets.
        runs = [Traffic(first.url, name, seconds=3), Traffic(second.url, name, seconds=3)]
        for run in runs:
            run.join()
        wait_until(
            lambda: admin.get(f"/api/experiments/{name}/stats").json()["totals"]["rewards"] > 0, 5, "rewards counted"
        )
        time.sleep(0.5)  # the last decision counts are flushed within 0.05 s
        totals = admin.get(f"/api/experiments/{name}/stats").json()["totals"]

    histories = []
    for replica in replicas:
        events = read_events(f"{replica.url}/api/experiments/{name}/events", seconds=0.5)
        histories.append(next(data for _, kind, data in events if kind == "snapshot")["series"])
    # Read a moment apart, the second may hold one more bucket, and the newest common one may
    # have been sampled in between: compare the buckets closed before either read.
    common = min(len(history["t"]) for history in histories) - 1
    assert common >= 3 and histories[0]["t"][:common] == histories[1]["t"][:common]
    for arm in models.urls:
        for column in ("decisions", "errors", "rewards", "reward_sum", "p_best", "mean"):
            values = [history["arms"][arm][column][:common] for history in histories]
            assert values[0] == values[1], (arm, column)
    # The buckets add up to the experiment's totals: nothing is missed or counted twice.
    arms = histories[0]["arms"].values()
    assert sum(sum(column["decisions"]) for column in arms) == totals["decisions"]
    assert sum(sum(column["rewards"]) for column in arms) == totals["rewards"]
    # One replica sampled P(best) into the buckets (shadow arms excepted), one value per bucket.
    sampled = [p for p in histories[0]["arms"]["v3"]["p_best"] if p is not None]
    assert len(sampled) >= 2 and all(0.0 <= p <= 1.0 for p in sampled)


def test_overview_lists_each_experiment_with_its_recent_traffic(
    replicas: tuple[ServiceProcess, ServiceProcess], models: ModelServers, name: str
) -> None:
    service, _ = replicas
    body = experiment_body(name, models)
    body["arms"][0] |= {"shadow": True}
    with _admin(service) as admin:
        admin.post("/api/experiments", json=body).raise_for_status()
    Traffic(service.url, name, seconds=2).join()

    def entry() -> dict[str, Any]:
        overview = httpx.get(f"{service.url}/dashboard/data/overview", timeout=10).json()
        return next(item for item in overview if item["name"] == name)

    # The overview's stats may be up to OVERVIEW_MAX_AGE_S (5 s) old: a worker that computed them
    # before the first reward shows no leader until it confirms them again.
    wait_until(lambda: entry()["leader"] is not None, 8, "the overview names a leader")
    summary = entry()
    assert summary["status"] == "running" and summary["policy"] == "thompson"
    assert [(arm["name"], arm["shadow"]) for arm in summary["arms"]] == [("v1", True), ("v2", False), ("v3", False)]
    served = sum(arm["decisions_last_minute"] for arm in summary["arms"] if not arm["shadow"])
    assert served == summary["decisions_last_minute"] > 0
    assert summary["leader"] in {"v2", "v3"} and isinstance(summary["stopping_met"], bool)


def test_unknown_experiment_stream_is_404_and_pages_are_served(replicas: tuple[ServiceProcess, ServiceProcess]) -> None:
    service, _ = replicas
    missing = httpx.get(f"{service.url}/api/experiments/no-such-experiment/events", timeout=10)
    assert missing.status_code == 404 and "no-such-experiment" in missing.json()["detail"]
    for path in ("/dashboard", "/dashboard/anything"):
        page = httpx.get(service.url + path, timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    plotly = httpx.get(f"{service.url}/dashboard/assets/plotly.min.js", timeout=10)
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000  # the real library, not a stub
    assert httpx.get(f"{service.url}/dashboard/assets/..%2Fsettings.py", timeout=10).status_code == 404


def test_rollback_restores_the_settings_before_each_change(
    replicas: tuple[ServiceProcess, ServiceProcess], models: ModelServers, name: str
) -> None:
    service, _ = replicas
    with _admin(service) as admin:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        nothing = admin.post(f"/api/experiments/{name}/rollback")
        assert nothing.status_code == 409 and "no earlier settings" in nothing.json()["detail"]

        admin.patch(f"/api/experiments/{name}", json={"policy": {"kind": "static", "weights": [0, 0, 1]}})
        admin.post(f"/api/experiments/{name}/pause").raise_for_status()
        undone = admin.post(f"/api/experiments/{name}/rollback")
        assert undone.status_code == 200, undone.text
        assert undone.json()["status"] == "running" and undone.json()["policy"]["kind"] == "static"
        again = admin.post(f"/api/experiments/{name}/rollback").json()
        assert again["policy"]["kind"] == "thompson" and again["status"] == "running"
        assert admin.get(f"/api/experiments/{name}").json()["policy"]["kind"] == "thompson"

    refused = httpx.post(f"{service.url}/api/experiments/{name}/rollback", timeout=10)
    assert refused.status_code == 401
    wrong = httpx.post(
        f"{service.url}/api/experiments/{name}/rollback", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 403


def test_a_private_dashboard_wants_the_admin_token(clean_test_db: str, models: ModelServers, name: str) -> None:
    service = ServiceProcess(clean_test_db, BANDIT_DASHBOARD_PUBLIC="false").start()
    try:
        with _admin(service) as admin:
            admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        url = f"{service.url}/api/experiments/{name}/events"
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(f"{service.url}/dashboard/data/overview", timeout=10).status_code == 401
        assert httpx.get(f"{service.url}/dashboard", timeout=10).status_code == 404
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10) as response:
            assert response.status_code == 200
    finally:
        service.stop()


def test_a_stream_ends_by_itself_so_an_open_dashboard_never_blocks_a_graceful_stop(
    clean_test_db: str, models: ModelServers, name: str
) -> None:
    service = ServiceProcess(clean_test_db, BANDIT_EVENTS_STREAM_MAX="2").start()
    try:
        with _admin(service) as admin:
            admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
        url = f"{service.url}/api/experiments/{name}/events"
        started = time.monotonic()
        events = read_events(url, seconds=30)  # returns when the service closes the stream
        lasted = time.monotonic() - started
        assert 1.5 < lasted < 10 and len(events) >= 2, (lasted, len(events))

        # A stop with a dashboard watching: uvicorn waits for open responses, and gets them.
        watcher = threading.Thread(target=read_events, args=(url, 120), daemon=True)
        watcher.start()
        time.sleep(0.5)
        process = service.process
        assert process is not None
        service.stop()
        # uvicorn re-raises the SIGTERM it handled (-15); a stop that waited in vain kills (-9).
        assert process.returncode in (0, -15), f"the service had to be killed ({process.returncode})"
        watcher.join(timeout=10)
    finally:
        service.stop()
