"""Redis state written by release 0.1 (commit aa7500d) is read and served by this code.

tests/fixtures/release_0_1_state.json holds every key that release left in its database, as
tests/fixtures/record_release_state.py recorded it, with what the release answered about it.
The state is loaded into a database of its own, each key with its type and the TTL it has left
now (recorded PTTL minus the time since `recorded_at`; keys that would have expired since are
left out, as Redis would have dropped them), and only the arm URLs in the stored configs and
config histories rewritten to live model servers. A service of this code then reads it.

The feedback checks over HTTP use decision ids the release issued; they hold while the
decision's feedback window (90 days from recording) has not passed, and are skipped after it.
Two checks hold whatever the fixture's age: the ids verify with the stored keyring at the
time they were issued, and the history buckets (restored with at least `MIN_SERIES_TTL_MS`
left, so they are there to read) are read as of the recording.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from bandit.core.decision_ids import DecisionSigner
from bandit.store.redis_store import RedisStore
from tests.conftest import RELEASE_STATE_DB
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "release_0_1_state.json"
STATE: dict[str, Any] = json.loads(FIXTURE.read_text())
EXPERIMENTS = sorted(STATE["experiments"])
#: An id this close to the end of its feedback window may pass it during the test: not checked.
WINDOW_MARGIN_S = 600
#: History buckets are restored with at least this much time left, however old the fixture.
MIN_SERIES_TTL_MS = 600_000
_EXPERIMENT_KEY = re.compile(r"^mab:\{(?P<name>[^}]+)\}:(?P<kind>config|history)$")
_SERIES_KEY = re.compile(r"^mab:\{(?P<name>[^}]+)\}:series:(?P<incarnation>[^:]+):(?P<bucket>\d+)$")
_EXACT_ARM_FIELDS = ("name", "shadow", "decisions", "rewards", "reward_sum", "errors", "mirror_dropped", "changes")


@dataclass
class Restored:
    """The service on the restored state, and what it answered before any test changed anything."""

    service: ServiceProcess
    urls: dict[str, str]
    loaded: dict[str, dict[str, Any]]
    expired: list[str]
    listing: list[dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    stats: dict[str, dict[str, Any]]

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def _decode(text: str, encoding: str) -> bytes:
    return text.encode() if encoding == "utf-8" else base64.b64decode(text)


def _arm_names(entries: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for entry in entries:
        match = _EXPERIMENT_KEY.match(entry["key"])
        if match is None:
            continue
        raws = [entry["value"]] if match["kind"] == "config" else entry["value"]
        names |= {arm["name"] for raw in raws for arm in json.loads(_decode(raw, entry["encoding"]))["arms"]}
    return names


def _with_urls(raw: bytes, urls: dict[str, str]) -> bytes:
    """A stored experiment with its arms' URLs pointing at `urls`; nothing else touched."""
    experiment = json.loads(raw)
    for arm in experiment["arms"]:
        arm["url"] = urls[arm["name"]]
    return json.dumps(experiment, separators=(",", ":")).encode()


#: What later releases added to an experiment's body, each at the value a recorded config reads
#: as: the contract only grows (issues 15 and 16).
ADDED_FIELDS: dict[str, Any] = {
    "guardrails": None,
    "log": None,
    "capped": {},
    "canary": None,
    "judged_since": {},
    "autopilot_held": False,
    "changed_by": "operator",
}
ADDED_STOPPING_FIELDS: dict[str, Any] = {"action": "report"}
ADDED_REWARD_FIELDS: dict[str, Any] = {"pending": "exposure"}


def _relocated(config: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
    """A recorded GET body with the URLs the restored configs got, and the fields added since."""
    return {
        **ADDED_FIELDS,
        **config,
        "arms": [{**arm, "url": urls[arm["name"]]} for arm in config["arms"]],
        "stopping": {**config["stopping"], **ADDED_STOPPING_FIELDS},
        "reward": {**config["reward"], **ADDED_REWARD_FIELDS},
    }


def load_state(client: sync_redis.Redis, urls: dict[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Write every recorded key with its type and the TTL left now; (loaded keys, expired keys)."""
    elapsed_ms = int((time.time() - STATE["recorded_at"]) * 1000)
    loaded: dict[str, dict[str, Any]] = {}
    expired: list[str] = []
    with client.pipeline(transaction=True) as pipe:
        for entry in STATE["keys"]:
            encoding = entry["encoding"]
            key = _decode(entry["key"], encoding)
            ttl_ms = None if entry["pttl_ms"] is None else entry["pttl_ms"] - elapsed_ms
            if ttl_ms is not None and _SERIES_KEY.match(entry["key"]):
                ttl_ms = max(ttl_ms, MIN_SERIES_TTL_MS)
            if ttl_ms is not None and ttl_ms <= 0:
                expired.append(entry["key"])
                continue
            value = entry["value"]
            relocate = _EXPERIMENT_KEY.match(entry["key"]) is not None
            if entry["type"] == "string":
                raw = _decode(value, encoding)
                pipe.set(key, _with_urls(raw, urls) if relocate else raw)
            elif entry["type"] == "hash":
                pipe.hset(key, mapping={_decode(k, encoding): _decode(v, encoding) for k, v in value.items()})
            elif entry["type"] == "list":
                raws = [_decode(v, encoding) for v in value]
                pipe.rpush(key, *[_with_urls(raw, urls) if relocate else raw for raw in raws])
            elif entry["type"] == "set":
                pipe.sadd(key, *[_decode(v, encoding) for v in value])
            elif entry["type"] == "zset":
                pipe.zadd(key, {_decode(member, encoding): score for member, score in value})
            else:
                raise ValueError(f"{FIXTURE.name}: key {entry['key']} has unknown type {entry['type']}")
            if ttl_ms is not None:
                pipe.pexpire(key, ttl_ms)
            loaded[entry["key"]] = {**entry, "pttl_ms": ttl_ms}
        pipe.execute()
    return loaded, expired


@pytest.fixture(scope="module")
def state_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{RELEASE_STATE_DB}"


@pytest.fixture(scope="module")
def restored(state_url: str, models: ModelServers) -> Iterator[Restored]:
    assert STATE["format"] == "mab-release-state/1", f"{FIXTURE.name} has format {STATE['format']}"
    client = sync_redis.Redis.from_url(state_url)
    client.flushdb()
    # Arms the `models` servers do not cover (blue, green, shadow...) get servers of their own.
    missing = sorted(_arm_names(STATE["keys"]) - set(models.urls))
    extra = ModelServers([f"{name}:0.05" for name in missing]) if missing else None
    try:
        urls = {**models.urls, **(extra.urls if extra is not None else {})}
        loaded, expired = load_state(client, urls)
        client.close()
        # Signing with the keyring in Redis, and feedback open, whatever this environment sets.
        service = ServiceProcess(state_url, BANDIT_SECRET="", BANDIT_FEEDBACK_TOKEN="").start()
        try:
            with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
                listing = admin.get("/api/experiments").raise_for_status().json()
                configs = {name: admin.get(f"/api/experiments/{name}").json() for name in EXPERIMENTS}
                stats = {name: admin.get(f"/api/experiments/{name}/stats").json() for name in EXPERIMENTS}
            yield Restored(service, urls, loaded, expired, listing, configs, stats)
        finally:
            service.stop()
    finally:
        if extra is not None:
            extra.stop()


def _decision_params(kind: str) -> list[Any]:
    return [
        pytest.param(item, id=f"{item['experiment']}-{item['arm']}-{item['signed_with']}")
        for item in STATE["decisions"][kind]
    ]


def _skip_past_window(item: dict[str, Any]) -> None:
    window_s = STATE["experiments"][item["experiment"]]["config"]["reward"]["window_s"]
    age_s = time.time() - item["issued_at"]
    if age_s > window_s - WINDOW_MARGIN_S:
        pytest.skip(
            f"{FIXTURE.name} is too old for this check: the decision is {age_s / 86400:.1f} days old and the "
            f"feedback window of {item['experiment']} is {window_s / 86400:.0f} days (record the fixture again)"
        )


def _feedback(restored: Restored, decision: str, reward: float) -> httpx.Response:
    return httpx.post(
        f"{restored.service.url}/feedback", json={"items": [{"decision": decision, "reward": reward}]}, timeout=10
    )


def test_every_recorded_experiment_is_listed(restored: Restored) -> None:
    assert sorted(body["name"] for body in restored.listing) == STATE["listing"] == EXPERIMENTS
    for body in restored.listing:
        assert body == _relocated(STATE["experiments"][body["name"]]["config"], restored.urls)
    with restored.admin() as admin:
        overview = admin.get("/dashboard/data/overview")
    assert overview.status_code == 200
    assert sorted(summary["name"] for summary in overview.json()) == EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_reads_as_the_release_answered(restored: Restored, name: str) -> None:
    assert restored.configs[name] == _relocated(STATE["experiments"][name]["config"], restored.urls)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_stats_count_what_the_release_counted(restored: Restored, name: str) -> None:
    recorded = STATE["experiments"][name]
    expected, actual = recorded["stats"], restored.stats[name]
    assert (actual["experiment"], actual["status"], actual["policy"]) == (
        expected["experiment"],
        expected["status"],
        expected["policy"],
    )
    assert actual["totals"] == expected["totals"]
    assert [arm["name"] for arm in actual["arms"]] == [arm["name"] for arm in expected["arms"]]
    for old, new in zip(expected["arms"], actual["arms"], strict=True):
        assert {f: new[f] for f in _EXACT_ARM_FIELDS} == {f: old[f] for f in _EXACT_ARM_FIELDS}, old["name"]
        # Derived from the discounted policy statistics (pn:/ps:/pq:/pt:, step) and the latency histogram.
        assert new["effective_rewards"] == pytest.approx(old["effective_rewards"], rel=1e-9), old["name"]
        for derived in ("mean", "interval"):
            if old[derived] is None:
                assert new[derived] is None, (old["name"], derived)
            else:
                assert new[derived] == pytest.approx(old[derived], rel=1e-9), (old["name"], derived)
        for quantile in ("p50", "p99"):
            old_ms, new_ms = old["latency_ms"][quantile], new["latency_ms"][quantile]
            assert new_ms == (None if old_ms is None else pytest.approx(old_ms, rel=1e-9)), (old["name"], quantile)
        if recorded["deterministic_allocation"]:  # e.g. the gradient policy's preferences (h:)
            assert new["allocation"] == pytest.approx(old["allocation"], abs=1e-9), old["name"]


def _expected_arms(config: dict[str, Any]) -> set[str]:
    """Arms a request may be routed to under `config` as it stands."""
    serving = [arm for arm in config["arms"] if not arm["shadow"]]
    if config["status"] == "paused":
        return {serving[0]["name"]}
    if config["status"] == "promoted":
        return {config["promoted_arm"]}
    if config["policy"]["kind"] == "static":
        weights = config["policy"]["weights"] or [arm["weight"] for arm in config["arms"]]
        return {arm["name"] for arm, w in zip(config["arms"], weights, strict=True) if w > 0 and not arm["shadow"]}
    return {arm["name"] for arm in serving}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_invoke_routes_and_its_feedback_is_counted(restored: Restored, name: str) -> None:
    with restored.admin() as admin:
        config = admin.get(f"/api/experiments/{name}").json()
    path = STATE["experiments"][name]["invoke_path"]
    response = httpx.post(f"{restored.service.url}/invoke/{name}/{path}", json={"x": 1}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["X-Bandit-Experiment"] == name
    assert response.headers["X-Bandit-Arm"] in _expected_arms(config)
    decision = response.headers["X-Bandit-Decision"]
    result = _feedback(restored, decision, STATE["experiments"][name]["reward"]).json()
    assert (result["accepted"], result["duplicate"], result["rejected"]) == (1, 0, 0), result


@pytest.mark.parametrize("item", _decision_params("rewarded"))
def test_rewarded_decision_of_the_release_is_a_duplicate(restored: Restored, item: dict[str, Any]) -> None:
    _skip_past_window(item)
    response = _feedback(restored, item["decision"], item["reward"])
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 0, "duplicate": 1, "rejected": 0, "errors": []}


@pytest.mark.parametrize("item", _decision_params("unrewarded"))
def test_unrewarded_decision_of_the_release_is_accepted_once(restored: Restored, item: dict[str, Any]) -> None:
    """Its signature verifies with the keyring the release stored, whichever key of it signed."""
    _skip_past_window(item)
    first = _feedback(restored, item["decision"], item["reward"])
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 1, "duplicate": 0, "rejected": 0, "errors": []}
    again = _feedback(restored, item["decision"], item["reward"]).json()
    assert (again["accepted"], again["duplicate"]) == (0, 1)


@pytest.mark.parametrize("item", _decision_params("stale"))
def test_decision_from_before_a_reset_is_refused(restored: Restored, item: dict[str, Any]) -> None:
    _skip_past_window(item)
    response = httpx.post(
        f"{restored.service.url}/feedback", json={"decision": item["decision"], "reward": item["reward"]}
    )
    assert response.status_code == 410, response.text
    assert "reset" in response.json()["detail"]


def _first_snapshot(restored: Restored, name: str) -> dict[str, Any]:
    with (
        httpx.Client(base_url=restored.service.url, timeout=10) as client,
        client.stream("GET", f"/api/experiments/{name}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "snapshot":
                snapshot: dict[str, Any] = json.loads(line.partition(":")[2])
                return snapshot
    raise AssertionError(f"the events stream of {name} ended without a snapshot")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_events_stream_serves_the_recorded_experiment(restored: Restored, name: str) -> None:
    snapshot = _first_snapshot(restored, name)
    config = STATE["experiments"][name]["config"]
    assert snapshot["stats"]["experiment"] == name
    assert snapshot["incarnation"] == config["incarnation"]
    assert sorted(snapshot["series"]["arms"]) == sorted(arm["name"] for arm in config["arms"])


def _all_decisions() -> list[dict[str, Any]]:
    return [item for kind in ("rewarded", "unrewarded", "stale") for item in STATE["decisions"][kind]]


async def test_every_decision_id_of_the_release_verifies_with_its_stored_keyring(
    restored: Restored, state_url: str
) -> None:
    """Time-independent: the keyring as stored, and each id checked at the moment it was issued."""
    client = Redis.from_url(state_url)
    try:
        ring = await RedisStore(client).keyring.load()
    finally:
        await client.aclose()
    signed_with = {item["signed_with"] for item in _all_decisions()}
    assert len(signed_with) >= 2, "the fixture should hold ids of the rotated key and of the one before"
    for item in _all_decisions():
        decision = DecisionSigner(ring, clock=lambda at=item["issued_at"]: at).verify(item["decision"])
        assert (decision.experiment, decision.arm) == (item["experiment"], item["arm"])


async def test_history_buckets_of_the_release_read_as_they_were_written(restored: Restored, state_url: str) -> None:
    """Time-independent: the buckets of each experiment's incarnation, read as of the recording."""
    buckets: dict[tuple[str, str], dict[int, dict[bytes, bytes]]] = {}
    for entry in STATE["keys"]:
        match = _SERIES_KEY.match(entry["key"])
        if match is not None:
            fields = {_decode(k, entry["encoding"]): _decode(v, entry["encoding"]) for k, v in entry["value"].items()}
            buckets.setdefault((match["name"], match["incarnation"]), {})[int(match["bucket"])] = fields
    assert buckets, f"{FIXTURE.name} holds no history bucket"
    client = Redis.from_url(state_url)
    try:
        reader = RedisStore(client).series
        for (name, incarnation), written in sorted(buckets.items()):
            arms = sorted(
                {field.decode().split(":")[1] for fields in written.values() for field in fields if b":" in field}
            )
            series = await reader.read(name, incarnation, arms, now=STATE["recorded_at"])
            for bucket, fields in written.items():
                index = series.t.index(bucket * series.bucket_s)
                for arm in arms:
                    column = series.arms[arm]
                    assert column.decisions[index] == int(fields.get(f"d:{arm}".encode(), 0)), (name, bucket, arm)
                    assert column.rewards[index] == int(fields.get(f"n:{arm}".encode(), 0)), (name, bucket, arm)
                    assert column.reward_sum[index] == pytest.approx(float(fields.get(f"s:{arm}".encode(), 0)))
    finally:
        await client.aclose()


def test_history_buckets_of_the_release_are_read(restored: Restored) -> None:
    """The dashboard's history buckets the release wrote, in the events stream's first snapshot.

    The stream reads the last hour (the release's default BANDIT_SERIES_BUCKETS), so only a
    fixture younger than that still has buckets in it.
    """
    live: dict[str, list[tuple[int, dict[bytes, bytes]]]] = {}
    for key, entry in restored.loaded.items():
        match = _SERIES_KEY.match(key)
        config = STATE["experiments"].get(match["name"], {}).get("config") if match else None
        # Buckets of the current incarnation not about to leave the hour the stream reads.
        if match is None or config is None or match["incarnation"] != config["incarnation"]:
            continue
        in_the_hour = time.time() - int(match["bucket"]) * 5 < 3600 - 60
        if entry["pttl_ms"] is not None and entry["pttl_ms"] > 60_000 and in_the_hour:
            fields = {_decode(k, entry["encoding"]): _decode(v, entry["encoding"]) for k, v in entry["value"].items()}
            live.setdefault(match["name"], []).append((int(match["bucket"]), fields))
    if not live:
        age_min = (time.time() - STATE["recorded_at"]) / 60
        pytest.skip(f"{FIXTURE.name} is {age_min:.0f} min old: every history bucket it holds has expired")
    for name, buckets in sorted(live.items()):
        series = _first_snapshot(restored, name)["series"]
        for bucket, fields in buckets:
            start = bucket * series["bucket_s"]
            assert start in series["t"], f"bucket {bucket} of {name} missing from the history"
            index = series["t"].index(start)
            for arm, column in series["arms"].items():
                assert column["decisions"][index] == int(fields.get(f"d:{arm}".encode(), 0)), (name, bucket, arm)
                assert column["rewards"][index] == int(fields.get(f"n:{arm}".encode(), 0)), (name, bucket, arm)
                assert column["reward_sum"][index] == pytest.approx(float(fields.get(f"s:{arm}".encode(), 0)))


def _history(name: str) -> list[dict[str, Any]]:
    entry = next((e for e in STATE["keys"] if e["key"] == f"mab:{{{name}}}:history"), None)
    return [] if entry is None else [json.loads(_decode(raw, entry["encoding"])) for raw in entry["value"]]


@pytest.mark.parametrize("name", [name for name in EXPERIMENTS if _history(name)])
def test_rollback_restores_the_settings_the_release_kept(restored: Restored, name: str) -> None:
    previous = _relocated(_history(name)[0], restored.urls)
    with restored.admin() as admin:
        before = admin.get(f"/api/experiments/{name}").json()
        response = admin.post(f"/api/experiments/{name}/rollback")
    assert response.status_code == 200, response.text
    rolled_back = response.json()
    bookkeeping = ("version", "updated_at", "incarnation")
    assert {k: v for k, v in rolled_back.items() if k not in bookkeeping} == {
        k: v for k, v in previous.items() if k not in bookkeeping
    }
    assert rolled_back["version"] == before["version"] + 1
    assert rolled_back["incarnation"] == before["incarnation"]


def test_nothing_was_left_out_but_expired_keys(restored: Restored) -> None:
    """Every key of the release was loaded unless its TTL ran out since recording (seen markers, history buckets)."""
    assert len(restored.loaded) + len(restored.expired) == len(STATE["keys"])
    kinds = {key.split(":")[2] for key in restored.expired if key.count(":") >= 3}
    assert kinds <= {"seen", "series"}, restored.expired
