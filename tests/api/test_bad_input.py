"""Bad input, case by case, against a running service: each refusal is a 4xx that names the problem.

Oversized bodies, deep JSON, huge batches, non-finite rewards, hostile names and upstream
URLs, and the limits on arms and experiments. Every case checks the status and the message.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import redis as sync_redis

from bandit.core.models import MAX_ARMS, ArmSpec
from bandit.core.payloads import MAX_FEEDBACK_ITEMS, FeedbackRequest
from bandit.core.settings import Settings
from bandit.store import keys
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"content-type": "application/json"}
API_BODY_LIMIT = 64 * 1024
ARM = {"name": "a", "url": "http://127.0.0.1:9"}


def post_raw(service: ServiceProcess, path: str, content: bytes, method: str = "POST") -> httpx.Response:
    return httpx.request(method, f"{service.url}{path}", content=content, headers={**AUTH, **JSON}, timeout=30)


def detail_of(response: httpx.Response) -> str:
    """The JSON error body's detail, after checking the body has the contract's shape."""
    body = response.json()
    assert body["status_code"] == response.status_code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body["detail"]


def decisions_for(service: ServiceProcess, name: str, n: int) -> list[str]:
    with httpx.Client(base_url=service.url, timeout=10) as client:
        return [client.post(f"/invoke/{name}/predict", json={"x": 1}).headers["X-Bandit-Decision"] for _ in range(n)]


# -- request body size ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_bodies(clean_test_db: str, models: ModelServers) -> Iterator[ServiceProcess]:
    """A service whose management and feedback bodies may be 64 KiB at most."""
    process = ServiceProcess(clean_test_db, BANDIT_MAX_API_BODY_BYTES=str(API_BODY_LIMIT)).start()
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/feedback"), ("POST", "/api/experiments"), ("PATCH", "/api/experiments/some-name")],
)
def test_a_body_past_the_limit_gets_413_naming_the_limit(small_bodies: ServiceProcess, method: str, path: str) -> None:
    padded = b'{"decision": "' + b"x" * API_BODY_LIMIT + b'", "reward": 1}'
    response = post_raw(small_bodies, path, padded, method)
    assert response.status_code == 413
    assert f"limit of {API_BODY_LIMIT} bytes" in detail_of(response)

    # Without a Content-Length (chunked), the bytes are counted as they arrive.
    def chunks() -> Iterator[bytes]:
        yield padded

    streamed = httpx.request(method, f"{small_bodies.url}{path}", content=chunks(), headers={**AUTH, **JSON})
    assert streamed.status_code == 413
    assert f"limit of {API_BODY_LIMIT} bytes" in detail_of(streamed)

    # Just under the limit the body is read and judged on its content.
    under = b'{"decision": "' + b" " * (API_BODY_LIMIT - 100) + b'"}'
    assert post_raw(small_bodies, path, under, method).status_code == 422


def test_the_default_api_body_limit_is_a_megabyte(service: ServiceProcess) -> None:
    limit = Settings().max_api_body_bytes
    assert limit == 1024 * 1024
    response = post_raw(service, "/feedback", b'{"items": [' + b" " * limit + b"]}")
    assert response.status_code == 413
    assert f"limit of {limit} bytes for /feedback" in detail_of(response)


def test_the_api_body_limit_leaves_the_proxy_alone(
    small_bodies: ServiceProcess, models: ModelServers, name: str
) -> None:
    httpx.post(
        f"{small_bodies.url}/api/experiments", json=experiment_body(name, models), headers=AUTH
    ).raise_for_status()
    forwarded = httpx.post(f"{small_bodies.url}/invoke/{name}/predict", content=b"x" * (4 * API_BODY_LIMIT))
    assert forwarded.status_code == 200


# -- malformed JSON ------------------------------------------------------------------------


DEEP_BODIES = {
    "100k [": b"[" * 100_000,
    "balanced 50k []": b"[" * 50_000 + b"]" * 50_000,
    "100k nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep items": b'{"items": [' + b"[" * 20_000 + b"]" * 20_000 + b"]}",
    "deep policy": b'{"name": "x", "arms": [], "policy": ' + b'{"a": ' * 20_000 + b"1" + b"}" * 20_000 + b"}",
}


@pytest.mark.parametrize("path", ["/feedback", "/api/experiments"])
@pytest.mark.parametrize("body", list(DEEP_BODIES), ids=list(DEEP_BODIES))
def test_deeply_nested_json_gets_422_and_the_service_lives_on(service: ServiceProcess, path: str, body: str) -> None:
    response = post_raw(service, path, DEEP_BODIES[body])
    assert response.status_code == 422
    assert "nested too deeply" in detail_of(response)
    assert httpx.get(f"{service.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"decision": "d", "reward": NaN}', "NaN and Infinity are not JSON numbers"),
        (b'{"decision": "d", "reward": Infinity}', "NaN and Infinity are not JSON numbers"),
        (b'{"decision": "d", "reward": -Infinity}', "NaN and Infinity are not JSON numbers"),
        (b'{"decision": "d", "reward": 1e999}', "out of range"),
        (b'{"decision": "d", "reward": -1e999}', "out of range"),
        (b'{"decision": "d", "reward": 1e309}', "out of range"),
        (b'{"decision": "d", "reward": 1' + b"0" * 400 + b"}", "`reward`: Number out of range"),
        (b'{"decision": "d", "reward": 1e16}', "`reward`: Expected `float` <= 1000000000000000.0"),
        # Numbers in strings are converted, but still have to be finite and in range.
        (b'{"decision": "d", "reward": "NaN"}', "`reward`: Expected `float` >= -1000000000000000.0"),
        (b'{"decision": "d", "reward": "Infinity"}', "`reward`: Expected `float` <= 1000000000000000.0"),
        (b'{"decision": "d", "reward": "1e999"}', "`reward`: Number out of range"),
        (b'{"decision": "d", "reward": -1e16}', "`reward`: Expected `float` >= -1000000000000000.0"),
        (b'{"items": [{"decision": "d", "reward": NaN}]}', "NaN and Infinity are not JSON numbers"),
        (b'{"items": [{"decision": "d", "reward": 1e999}]}', "out of range"),
        (b'{"items": [{"decision": "d", "reward": 2e15}]}', "`items[0].reward`: Expected `float` <= "),
        (b'{"decision": "\xff\xfe", "reward": 1}', "not UTF-8"),
        (b'{"decision": "a\x01b", "reward": 1}', "not valid JSON"),
        (b'{"decision": "' + b"d" * 257 + b'", "reward": 1}', "`decision`: Expected `str` of length <= 256"),
    ],
)
def test_rewards_that_are_not_finite_numbers_get_422(service: ServiceProcess, content: bytes, message: str) -> None:
    response = post_raw(service, "/feedback", content)
    assert response.status_code == 422
    assert message in detail_of(response)


@pytest.mark.parametrize("reward", [math.nan, math.inf, -math.inf, 1e300])
def test_the_reward_type_refuses_non_finite_floats_outside_json(reward: float) -> None:
    # The same bounds hold for any way a reward reaches the model, not only JSON text.
    with pytest.raises(msgspec.ValidationError, match=r"at `\$.reward`"):
        msgspec.convert({"decision": "d", "reward": reward}, FeedbackRequest)


def test_an_unbounded_experiment_is_never_poisoned(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, redis_url: str, name: str
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models, reward={"bounds": None})).raise_for_status()
    decisions = decisions_for(service, name, 40)
    # Each refused reward leaves its decision unspent: a valid reward for it still counts.
    non_finite = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"1e16", b'"NaN"', b'"-inf"']
    for decision, bad in zip(decisions, non_finite, strict=False):
        refused = post_raw(service, "/feedback", b'{"decision": "%s", "reward": %s}' % (decision.encode(), bad))
        assert refused.status_code == 422, bad
        accepted = httpx.post(f"{service.url}/feedback", json={"decision": decision, "reward": 1.0})
        assert accepted.status_code == 202 and accepted.json()["accepted"] == 1, bad
    # The largest rewards allowed, in both directions, keep every sum finite: in Lua (the stats
    # hash) and in Python (the stats the API computes from it).
    extremes = [{"decision": d, "reward": 1e15 if i % 2 else -1e15} for i, d in enumerate(decisions[len(non_finite) :])]
    batch = httpx.post(f"{service.url}/feedback", json={"items": extremes})
    assert batch.status_code == 202 and batch.json()["accepted"] == len(extremes)

    client = sync_redis.Redis.from_url(redis_url)
    try:
        stored = client.hgetall(keys.counters_hash(name))
    finally:
        client.close()
    numbers = {k.decode(): float(v) for k, v in stored.items() if k != keys.INCARNATION_FIELD.encode()}
    assert numbers and all(math.isfinite(v) for v in numbers.values()), numbers
    stats = admin.get(f"/api/experiments/{name}/stats").json()
    assert stats["totals"]["rewards"] == 40
    for arm in stats["arms"]:
        assert math.isfinite(arm["reward_sum"]) and all(math.isfinite(x) for x in arm["interval"] or [])
        assert arm["mean"] is None or math.isfinite(arm["mean"])


def test_a_batch_past_the_limit_is_refused_naming_the_limit(service: ServiceProcess) -> None:
    items = [{"decision": "d", "reward": 1}]
    one_too_many = httpx.post(f"{service.url}/feedback", json={"items": items * (MAX_FEEDBACK_ITEMS + 1)})
    assert one_too_many.status_code == 422
    assert f"`items`: Expected `array` of length <= {MAX_FEEDBACK_ITEMS}" in detail_of(one_too_many)
    # A batch a hundred times larger is refused by size or by count, never taken.
    huge = httpx.post(f"{service.url}/feedback", json={"items": items * 100_000}, timeout=30)
    assert huge.status_code in (413, 422)
    detail = detail_of(huge)
    assert "bytes" in detail or str(MAX_FEEDBACK_ITEMS) in detail


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/feedback"), ("POST", "/api/experiments"), ("PATCH", "/api/experiments/x")]
)
def test_an_empty_body_gets_422_saying_so(service: ServiceProcess, method: str, path: str) -> None:
    response = post_raw(service, path, b"", method)
    assert response.status_code == 422
    assert "the request body is empty" in detail_of(response)


# -- names ---------------------------------------------------------------------------------

BAD_NAMES = [
    "",
    "a" * 65,
    "a" * 10_000,
    "a/b",
    "..",
    "a.b",
    "{a}",
    "a}",
    "a{b",
    "a:b",
    "a b",
    " a",
    "a\n",
    "a\r\n",
    "a\t",
    "a\x00",
    "a\x7f",
    "-a",
    "_a",
    "é",
    "名前",
    "a\u200b",
    "a\u202e",
    "\uff41",  # fullwidth a
]
NAME_RULE = "must be 1-64 ASCII letters, digits, '-' or '_', starting with a letter or digit"


def _name_refusal(detail: str, field: str) -> bool:
    too_long = f"{field}: Expected `str` of length <= 64"
    too_short = f"{field}: Expected `str` of length >= 1"
    return f"{field}: {NAME_RULE}" in detail or too_long in detail or too_short in detail


def _short(text: str) -> str:
    return repr(text) if len(text) <= 20 else f"{len(text)} chars"


@pytest.mark.parametrize("bad", BAD_NAMES, ids=_short)
def test_hostile_experiment_and_arm_names_get_422_naming_the_field(admin: httpx.Client, bad: str) -> None:
    experiment = admin.post("/api/experiments", json={"name": bad, "arms": [ARM]})
    assert experiment.status_code == 422
    assert _name_refusal(detail_of(experiment), "`name`"), experiment.text

    arm = admin.post("/api/experiments", json={"name": f"ok-{uuid.uuid4().hex[:8]}", "arms": [{**ARM, "name": bad}]})
    assert arm.status_code == 422
    assert _name_refusal(detail_of(arm), "`arms[0].name`"), arm.text

    promote = admin.post("/api/experiments/whatever/promote", json={"arm": bad})
    assert promote.status_code == 422
    assert _name_refusal(detail_of(promote), "`arm`"), promote.text


@pytest.mark.parametrize("bad", [b for b in BAD_NAMES if b], ids=_short)
def test_hostile_names_in_the_url_get_422_before_any_redis_key(admin: httpx.Client, bad: str) -> None:
    # "." and ".." are escaped too, so no client or server path normalisation drops them.
    segment = quote(bad, safe="").replace(".", "%2E")
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("GET", "/stats")]:
        response = admin.request(method, f"/api/experiments/{segment}{suffix}")
        if "/" in bad:
            # The server decodes %2F before routing: no route matches, and the answer says so.
            assert response.status_code == 404, (method, suffix, response.text)
            assert f"no such endpoint: {method} /api/experiments/{bad}{suffix}" in detail_of(response)
            continue
        assert response.status_code == 422, (method, suffix, response.text)
        assert _name_refusal(detail_of(response), "path parameter `name`"), response.text


def test_an_experiment_created_under_tightened_rules_is_still_usable(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client
) -> None:
    # The longest name and every allowed character, end to end: Redis keys, decision ids, feedback.
    name = "A-z_0" + "9" * 59
    arms = [{"name": "v_1-A", "url": models.urls["v1"]}]
    admin.post("/api/experiments", json={"name": name, "arms": arms}).raise_for_status()
    try:
        decision = decisions_for(service, name, 1)[0]
        assert httpx.post(f"{service.url}/feedback", json={"decision": decision, "reward": 1}).status_code == 202
    finally:
        admin.delete(f"/api/experiments/{name}")


# -- upstream URLs -------------------------------------------------------------------------

BAD_URLS = [
    "ftp://models.internal/v1",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "redis://127.0.0.1:6379",
    "//models.internal",
    "models.internal:8080",
    "http://",
    "http://:8080",
    "http:///path",
    "http://user:secret@models.internal",
    "http://user@models.internal",
    "http://models.internal?debug=1",
    "http://models.internal/#frag",
    "http://models.internal:0",
    "http://models.internal:65536",
    "http://models.internal:99999999",
    "http://models.internal:port",
    "http://models internal",
    "http://models.internal/a b",
    "http://models.internal\n",
    "http://models.internal/\x00",
    "http://models.internal/\r\nHost: evil",
    "http://exämple.com",
    "http://models..internal",
    "http://-models.internal",
    "http://999.1.1.1:8080",
    "http://256.0.0.1",
    "http://01.2.3.4",
    "http://1.2.3/v1",
    "http://0",
    "http://2130706433",
    "http://models.123",
    # Found by the fuzzer: httpx refuses a malformed IPv6 address only when connecting, with an
    # error that stopped a whole round of health probes.
    "http://[02bbA13Ae3FAD]:80",
    "http://[::1::2]",
    "http://[::ffff:10.0.0.1]",
    "http://[fe80::1%25eth0]",
    "http://models.internal/" + "a" * 3000,
    "",
]
URL_RULE = "must be an http:// or https:// URL with a host"


@pytest.mark.parametrize("bad", BAD_URLS, ids=lambda u: repr(u[:40]))
def test_upstream_urls_are_validated_at_creation(admin: httpx.Client, bad: str) -> None:
    body = {"name": f"url-{uuid.uuid4().hex[:8]}", "arms": [{**ARM, "url": bad}]}
    response = admin.post("/api/experiments", json=body)
    assert response.status_code == 422
    detail = detail_of(response)
    assert f"`arms[0].url`: {URL_RULE}" in detail or "`arms[0].url`: Expected `str` of length <= 2048" in detail


def test_upstream_urls_are_validated_on_update_too(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str
) -> None:
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    response = admin.patch(f"/api/experiments/{name}", json={"arms": [{**ARM, "url": "http://user:pw@host"}]})
    assert response.status_code == 422
    assert f"`arms[0].url`: {URL_RULE}" in detail_of(response)


@pytest.mark.parametrize(
    "good",
    [
        "http://127.0.0.1:8080",
        "https://model-v2.internal:443/predict/v2",
        "http://[::1]:9000/",
        "http://model_v1:8080",
        "http://localhost",
        "http://10.0.0.1:8080/v1",
        "http://255.255.255.255",
        "http://3com.example",
        "https://a.b.c.example.com/path;x=1/%7Euser",
    ],
)
def test_ordinary_upstream_urls_stay_valid(good: str) -> None:
    assert msgspec.convert({**ARM, "url": good}, ArmSpec).url == good


# -- limits on arms and experiments --------------------------------------------------------


def test_more_arms_than_the_limit_get_422_naming_the_limit(admin: httpx.Client, name: str) -> None:
    arms = [{"name": f"a{i}", "url": f"http://127.0.0.1:{9000 + i}"} for i in range(MAX_ARMS + 1)]
    created = admin.post("/api/experiments", json={"name": name, "arms": arms})
    assert created.status_code == 422
    assert f"`arms`: Expected `array` of length <= {MAX_ARMS}" in detail_of(created)

    admin.post("/api/experiments", json={"name": name, "arms": arms[:MAX_ARMS]}).raise_for_status()
    try:
        patched = admin.patch(f"/api/experiments/{name}", json={"arms": arms})
        assert patched.status_code == 422
        assert f"`arms`: Expected `array` of length <= {MAX_ARMS}" in detail_of(patched)
        weights = admin.patch(f"/api/experiments/{name}", json={"policy": {"kind": "static", "weights": [1] * 300}})
        assert weights.status_code == 422
        assert f"`policy.weights`: Expected `array` of length <= {MAX_ARMS}" in detail_of(weights)
    finally:
        admin.delete(f"/api/experiments/{name}")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"policy": {"kind": "static", "weights": [0, 0, 0]}}, "static weights of the serving arms must not all be 0"),
        ({"policy": {"kind": "static", "weights": [1, 1]}}, "policy.weights has 2 entries for 3 arms"),
        ({"arms": [{**ARM, "shadow": True}]}, "at least one arm must serve traffic"),
        ({"policy": {"kind": "ucb1"}, "reward": {"bounds": None}}, "ucb1 needs rewards in known bounds"),
    ],
)
def test_a_patch_breaking_a_rule_across_fields_gets_422_naming_it(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client, name: str, patch: dict[str, Any], message: str
) -> None:
    # These rules are checked when the changed experiment is rebuilt, not when the PATCH body is read.
    admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    response = admin.patch(f"/api/experiments/{name}", json=patch)
    assert response.status_code == 422
    assert message in detail_of(response)
    assert admin.get(f"/api/experiments/{name}").json()["version"] == 1


@pytest.mark.parametrize(
    "bounds", [[0, 1e-300], [0, 5e-324], [1, 1], [1, 0], [-2e15, 0], [0, 1e300], [0], [0, 1, 2], [None, 1], ["a", 1]]
)
def test_reward_bounds_must_be_a_finite_pair_of_some_width(admin: httpx.Client, name: str, bounds: list[Any]) -> None:
    # A vanishing width would blow a latency-penalised reward up to infinity on the policy's scale.
    response = admin.post("/api/experiments", json={"name": name, "arms": [ARM], "reward": {"bounds": bounds}})
    assert response.status_code == 422
    detail = detail_of(response)
    assert "reward.bounds" in detail


def test_more_experiments_than_the_limit_get_409_naming_the_limit(clean_test_db: str) -> None:
    client = sync_redis.Redis.from_url(clean_test_db)
    try:
        existing = int(client.scard(keys.EXPERIMENTS))
        limit = existing + 4
        limited = ServiceProcess(clean_test_db, BANDIT_MAX_EXPERIMENTS=str(limit)).start()
        try:
            with httpx.Client(base_url=limited.url, headers=AUTH, timeout=30) as admin:
                _check_experiment_limit(admin, client, limit)
        finally:
            limited.stop()
    finally:
        client.close()


RACERS = 24


def _check_experiment_limit(admin: httpx.Client, client: sync_redis.Redis, limit: int) -> None:
    tag = uuid.uuid4().hex[:6]
    names = [f"lim-{tag}-{i}" for i in range(RACERS + 1)]

    def create(name: str) -> httpx.Response:
        return admin.post("/api/experiments", json={"name": name, "arms": [ARM]})

    assert create(names[0]).status_code == 201
    # Racing creations, each on its own open connection and released together: only as many as
    # there is room for get through, whatever the interleaving.
    start = threading.Barrier(RACERS)

    def race(name: str) -> httpx.Response:
        with httpx.Client(base_url=str(admin.base_url), headers=AUTH, timeout=30) as own:
            own.get("/healthz")
            start.wait()
            return own.post("/api/experiments", json={"name": name, "arms": [ARM]})

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        racing = list(pool.map(race, names[1:]))
    assert sorted(r.status_code for r in racing) == [201] * 3 + [409] * (RACERS - 3)
    assert int(client.scard(keys.EXPERIMENTS)) == limit
    refused = [r for r in racing if r.status_code == 409]
    for response in refused:
        assert f"the limit of {limit} experiments (BANDIT_MAX_EXPERIMENTS) is reached" in detail_of(response)
    # A refused name leaves nothing behind; a taken name is still "already exists", not the limit.
    refused_names = [n for n, r in zip(names[1:], racing, strict=True) if r.status_code == 409]
    assert not client.exists(keys.config(refused_names[0]))
    assert "already exists" in detail_of(create(names[0]))
    # Deleting one makes room for one.
    assert admin.delete(f"/api/experiments/{names[0]}").status_code == 204
    assert create(refused_names[0]).status_code == 201
    assert create(refused_names[1]).status_code == 409
    for name in names:
        admin.delete(f"/api/experiments/{name}")


def test_settings_refuse_a_limit_below_one() -> None:
    from bandit.core.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="BANDIT_MAX_EXPERIMENTS"):
        load_settings(environ={"BANDIT_MAX_EXPERIMENTS": "0"})
    assert load_settings(environ={"BANDIT_MAX_EXPERIMENTS": "5"}).max_experiments == 5


@pytest.mark.parametrize(("variable", "value"), [("BANDIT_LOG_LEVEL", "trace"), ("BANDIT_SERVER", "nginx")])
def test_settings_refuse_a_log_level_or_server_no_server_knows(variable: str, value: str) -> None:
    from bandit.core.settings import SettingsError, load_settings

    # Named in the message rather than failing later inside logging or the server.
    with pytest.raises(SettingsError, match=r"BANDIT_LOG_LEVEL|server"):
        load_settings(environ={variable: value})
    assert load_settings(environ={"BANDIT_LOG_LEVEL": "WARNING"}).log_level == "WARNING"


def test_unknown_routes_and_methods_say_what_was_asked(admin: httpx.Client) -> None:
    missing = admin.get("/api/experiments/some-name/nothing-here")
    assert missing.status_code == 404
    assert "no such endpoint: GET /api/experiments/some-name/nothing-here" in detail_of(missing)
    wrong_method = admin.put("/api/experiments", json={})
    assert wrong_method.status_code == 405
    assert "PUT is not allowed on /api/experiments (allowed: " in detail_of(wrong_method)
