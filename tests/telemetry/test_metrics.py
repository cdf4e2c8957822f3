"""`GET /metrics` of a real `mab serve` with 2 workers: the counters of both, the gauges of the shared
state, and what they say while Redis is away."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bandit.cli.local_redis import free_port, start_redis
from bandit.cli.servers import metrics_directory
from bandit.core.settings import load_settings
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return scrape_text(answer.text)


def scrape_text(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def matching(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    wanted = set(labels.items())
    return {key: v for (sample, key), v in samples.items() if sample == name and wanted <= key}


@pytest.fixture(scope="module")
def two_workers(
    clean_test_db: str, models: ModelServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, Path]]:
    directory = tmp_path_factory.mktemp("metrics")
    service = ServiceProcess(
        clean_test_db, BANDIT_WORKERS="2", BANDIT_METRICS_MAX_AGE="0", PROMETHEUS_MULTIPROC_DIR=str(directory)
    ).start()
    yield service, directory
    service.stop()
    # The run's own directory under the one named is gone with it: nothing is counted twice next time.
    assert list(directory.iterdir()) == []


def invoke_many(url: str, experiment: str, path: str, count: int) -> list[httpx.Response]:
    """`count` invokes over fresh connections, so the kernel spreads them over both workers."""
    answers = []
    for start in range(0, count, 10):
        with httpx.Client(base_url=url, timeout=10) as client:
            answers += [
                client.post(f"/invoke/{experiment}/{path}", content=b"{}") for _ in range(min(10, count - start))
            ]
    return answers


def settled_stats(admin: httpx.Client, name: str, served: int) -> dict:
    """Stats once every request made is counted (the workers flush every 50 ms)."""
    stats: dict = {}

    def counted() -> bool:
        nonlocal stats
        stats = admin.get(f"/api/experiments/{name}/stats").json()
        return sum(arm["decisions"] + arm["errors"] for arm in stats["arms"] if not arm["shadow"]) >= served

    wait_until(counted, 10, "every request counted")
    return stats


def test_counters_of_both_workers_equal_the_stats(
    two_workers: tuple[ServiceProcess, Path], models: ModelServers
) -> None:
    service, directory = two_workers
    name = "metrics-served"
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=10) as admin:
        body = experiment_body(name, models)
        # A shadow arm gets a copy of every request; the other three share the traffic by fixed weights.
        body["arms"].append({"name": "shadow", "url": models.urls["v1"], "shadow": True, "mirror_percent": 100})
        body["policy"] = {"kind": "static", "weights": [0.5, 0.3, 0.2, 0]}
        assert admin.post("/api/experiments", json=body).status_code == 201
        answers = invoke_many(service.url, name, "predict", 300)
        assert all(answer.status_code == 200 for answer in answers)
        stats = settled_stats(admin, name, 300)
        # Every worker wrote its own values: a scrape of one that summed only its own would fall short.
        assert len(list(directory.glob("mab-metrics-*/counter_*.db"))) >= 2, list(directory.rglob("*"))
        wait_until(
            lambda: (
                value(scrape(service.url), "mab_shadow_requests_total", experiment=name, arm="shadow", outcome="sent")
                >= next(
                    arm["decisions"]
                    for arm in admin.get(f"/api/experiments/{name}/stats").json()["arms"]
                    if arm["shadow"]
                )
            ),
            10,
            "shadow copies counted",
        )
        stats = admin.get(f"/api/experiments/{name}/stats").json()
        samples = scrape(service.url)

    for arm in stats["arms"]:
        assert value(samples, "mab_decisions_total", experiment=name, arm=arm["name"]) == arm["decisions"], arm["name"]
        served = value(samples, "mab_upstream_request_duration_seconds_count", experiment=name, arm=arm["name"])
        assert served == arm["decisions"] + arm["errors"], arm["name"]
        assert value(samples, "mab_arm_allocation", experiment=name, arm=arm["name"]) == pytest.approx(
            arm["allocation"]
        )
        assert value(samples, "mab_arm_healthy", experiment=name, arm=arm["name"]) == 1.0
    serving = {arm["name"]: arm["decisions"] for arm in stats["arms"] if not arm["shadow"]}
    assert sum(serving.values()) == 300
    shadow = next(arm for arm in stats["arms"] if arm["shadow"])
    assert shadow["decisions"] > 0
    sent = value(samples, "mab_shadow_requests_total", experiment=name, arm="shadow", outcome="sent")
    assert sent == shadow["decisions"]
    # The static split's allocation: the weights, the shadow none.
    assert value(samples, "mab_arm_allocation", experiment=name, arm="v1") == pytest.approx(0.5)
    assert value(samples, "mab_arm_allocation", experiment=name, arm="shadow") == 0.0
    # The duration histogram's buckets are cumulative and end with every request.
    buckets = matching(samples, "mab_upstream_request_duration_seconds_bucket", experiment=name, arm="v1")
    by_bound = sorted((float(dict(labels)["le"]), count) for labels, count in buckets.items())
    assert [count for _, count in by_bound] == sorted(count for _, count in by_bound)
    assert by_bound[-1] == (float("inf"), serving["v1"])
    assert value(samples, "mab_redis_up") == 1.0
    assert 0 <= value(samples, "mab_snapshot_age_seconds", experiment=name) < 30


def test_upstream_errors_by_kind_equal_the_stats(
    two_workers: tuple[ServiceProcess, Path], models: ModelServers
) -> None:
    service, _ = two_workers
    name = "metrics-errors"
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every connection is refused
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=10) as admin:
        body = {
            "name": name,
            "arms": [{"name": "good", "url": models.urls["v1"]}, {"name": "gone", "url": closed}],
            "policy": {"kind": "static", "weights": [0.5, 0.5]},
        }
        assert admin.post("/api/experiments", json=body).status_code == 201
        # Connections to "gone" are refused (and retried on "good"); /status/500 answers 500 from "good".
        refused = invoke_many(service.url, name, "predict", 60)
        # Health ejects an arm by rate from 10 bad answers in one worker (half of 20 answers at
        # least): 8, however the kernel spreads them over the workers, leave "good" serving.
        failing = invoke_many(service.url, name, "status/500", 8)
        assert all(answer.status_code == 200 for answer in refused)
        assert all(answer.status_code == 500 for answer in failing)
        # Every request ended on "good" (a refused connection goes once to the other arm).
        stats = settled_stats(admin, name, 68)
        wait_until(
            lambda: (
                {arm["name"]: arm["errors"] for arm in admin.get(f"/api/experiments/{name}/stats").json()["arms"]}
                == errors_by_arm(scrape(service.url), name)
            ),
            10,
            "the errors flushed",
        )
        stats = admin.get(f"/api/experiments/{name}/stats").json()
        samples = scrape(service.url)

    arms = {arm["name"]: arm for arm in stats["arms"]}
    assert arms["good"]["decisions"] + arms["good"]["errors"] == 68
    assert arms["good"]["errors"] == 8
    assert value(samples, "mab_upstream_errors_total", experiment=name, arm="good", kind="http_5xx") == 8
    assert arms["gone"]["errors"] > 0 and arms["gone"]["decisions"] == 0
    assert (
        value(samples, "mab_upstream_errors_total", experiment=name, arm="gone", kind="connect")
        == arms["gone"]["errors"]
    )
    # Three refused connections in a row eject the arm; the answering worker's view says so, or
    # it readmitted it for a trial meanwhile. "good" takes traffic throughout.
    assert value(samples, "mab_arm_healthy", experiment=name, arm="good") == 1.0


def errors_by_arm(samples: Samples, name: str) -> dict[str, float]:
    """Failed requests per arm, over every kind."""
    errors = {"good": 0.0, "gone": 0.0}
    for labels, count in matching(samples, "mab_upstream_errors_total", experiment=name).items():
        errors[dict(labels)["arm"]] += count
    return errors


def test_feedback_outcomes_and_reward_sums_equal_the_stats(
    two_workers: tuple[ServiceProcess, Path], models: ModelServers
) -> None:
    service, _ = two_workers
    name = "metrics-feedback"
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=10) as admin:
        assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
        decisions = [answer.headers["x-bandit-decision"] for answer in invoke_many(service.url, name, "predict", 120)]
        before = scrape(service.url)
        with httpx.Client(base_url=service.url, timeout=10) as client:
            first = client.post("/feedback", json={"items": [{"decision": d, "reward": 0.5} for d in decisions[:100]]})
            again = client.post("/feedback", json={"items": [{"decision": d, "reward": 0.5} for d in decisions[:30]]})
            forged = client.post(
                "/feedback", json={"items": [{"decision": f"{d[:-4]}AAAA", "reward": 1.0} for d in decisions[100:110]]}
            )
            assert admin.post(f"/api/experiments/{name}/reset").status_code == 200
            stale = client.post("/feedback", json={"items": [{"decision": d, "reward": 1.0} for d in decisions[110:]]})
        assert (first.json()["accepted"], again.json()["duplicate"], forged.json()["rejected"]) == (100, 30, 10)
        assert [error["status"] for error in stale.json()["errors"]] == [410] * 10
        after = scrape(service.url)

    def grew(name_: str, **labels: str) -> float:
        return value(after, name_, **labels) - value(before, name_, **labels)

    assert grew("mab_feedback_items_total", experiment=name, outcome="accepted") == 100
    assert grew("mab_feedback_items_total", experiment=name, outcome="duplicate") == 30
    assert grew("mab_feedback_items_total", experiment=name, outcome="stale") == 10
    # A forged id's experiment is the sender's word: counted, but under no experiment's name.
    assert grew("mab_feedback_items_total", experiment="", outcome="rejected") == 10
    assert grew("mab_feedback_items_total", experiment=name, outcome="rejected") == 0
    rewarded = matching(after, "mab_reward_sum", experiment=name)
    assert sum(rewarded.values()) == pytest.approx(50.0)


def test_a_service_without_redis_still_serves_its_counters(models: ModelServers, tmp_path: Path) -> None:
    process, url = start_redis(workdir=tmp_path)
    service = ServiceProcess(url, BANDIT_SECRET="metrics-test-secret", BANDIT_METRICS_MAX_AGE="0").start()
    try:
        name = "metrics-outage"
        with httpx.Client(base_url=service.url, headers=AUTH, timeout=10) as admin:
            assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
        assert all(answer.status_code == 200 for answer in invoke_many(service.url, name, "predict", 20))
        process.terminate()
        process.wait(timeout=10)
        # Routing goes on from the snapshot; the scrape answers at once, with Redis down and no arm gauges.
        assert all(answer.status_code == 200 for answer in invoke_many(service.url, name, "predict", 10))
        samples: Samples = {}

        def counted_all() -> bool:
            nonlocal samples
            started = time.monotonic()
            samples = scrape(service.url)
            assert time.monotonic() - started < 5
            # The proxy adds its tallies to the metrics every flush interval, Redis or not.
            return sum(matching(samples, "mab_decisions_total", experiment=name).values()) == 30

        wait_until(counted_all, 5, "all 30 decisions in the metrics")
        assert value(samples, "mab_redis_up") == 0.0
        assert not matching(samples, "mab_arm_allocation", experiment=name)
    finally:
        service.stop()
        if process.poll() is None:
            process.terminate()


def test_metrics_can_be_turned_off(clean_test_db: str) -> None:
    service = ServiceProcess(clean_test_db, BANDIT_METRICS="false").start()
    try:
        answer = httpx.get(f"{service.url}/metrics", timeout=10)
        assert answer.status_code == 404
        assert "BANDIT_METRICS" in answer.json()["detail"]
    finally:
        service.stop()


def test_a_scrape_is_reused_for_its_max_age_and_a_metrics_token_guards_it(
    clean_test_db: str, models: ModelServers
) -> None:
    service = ServiceProcess(clean_test_db, BANDIT_METRICS_MAX_AGE="2", BANDIT_METRICS_TOKEN="scrape-token").start()
    try:
        url = f"{service.url}/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
        scraper = {"Authorization": "Bearer scrape-token"}
        first = httpx.get(url, headers=scraper)
        assert first.status_code == 200
        assert httpx.get(url, headers=AUTH).status_code == 200  # the admin token may read them too
        name = "metrics-cached"
        with httpx.Client(base_url=service.url, headers=AUTH, timeout=10) as admin:
            assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
        invoke_many(service.url, name, "predict", 5)
        # Within the max age, every scrape gets the text rendered first: the new traffic is not in it.
        again = httpx.get(url, headers=scraper)
        assert again.text == first.text and name not in again.text
        wait_until(
            lambda: (
                sum(matching(scrape_text(httpx.get(url, headers=scraper).text), "mab_decisions_total").values()) == 5
            ),
            6,
            "a fresh render after 2 s, with the 5 decisions",
        )
    finally:
        service.stop()
    # The token is a secret like the others: never in the log.
    assert "scrape-token" not in service.log()


@pytest.mark.parametrize("named", [False, True])
def test_each_run_gets_a_metrics_directory_of_its_own(
    named: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if named:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = load_settings(environ={})
    with metrics_directory(settings):
        made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert made.is_dir() and made.name.startswith(f"mab-metrics-{os.getpid()}-")
        assert (made.parent == tmp_path) is named
        (made / "counter_123.db").write_bytes(b"x")  # what a worker would leave
    assert not made.exists()
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") == (str(tmp_path) if named else None)
    with metrics_directory(load_settings(environ={"BANDIT_METRICS": "false"})):
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") == (str(tmp_path) if named else None)
