"""Structured logs (BANDIT_LOG_FORMAT=json): the formatter's fields, the redaction of secrets, and
real multi-worker services whose every line is JSON and never holds a token, key or password."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from bandit.api.errors import unexpected_error
from bandit.cli.local_redis import answers, free_port
from bandit.cli.log_format import (
    REDACTED,
    TEXT_FORMAT,
    JsonLinesFormatter,
    SecretRedaction,
    logging_config,
    rfc3339_utc,
    secret_values,
)
from bandit.core.settings import Settings, SettingsError, load_settings
from bandit.store.connection import masked_url, url_passwords
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ROOT, ModelServers, ServiceProcess, wait_until

ADMIN = f"admin-{secrets.token_urlsafe(24)}"
FEEDBACK = f"feedback-{secrets.token_urlsafe(24)}"
SECRET = f"secret-{secrets.token_urlsafe(24)}"
WRONG = f"wrong-{secrets.token_urlsafe(24)}"
# With characters a URL must percent-encode, so both of its forms are looked for in the log.
REDIS_PASSWORD = f"pw/{secrets.token_hex(12)}@x"
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- the formatter ---------------------------------------------------------------------------------
def emit(formatter: logging.Formatter, *secrets_: str, logger: str = "mab.test") -> tuple[logging.Logger, io.StringIO]:
    """A logger writing through `formatter` and a redaction of `secrets_` into a buffer, as the
    service's handler does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(SecretRedaction(secrets_))
    log = logging.getLogger(f"{logger}.{uuid.uuid4().hex[:8]}")
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.DEBUG)
    return log, out


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_record_is_one_json_object_with_its_time_level_logger_and_rendered_event() -> None:
    log, out = emit(JsonLinesFormatter())
    before = time.time()
    log.warning("arm %s of %s failed: %d times", "v1", "shop", 3, extra={"experiment": "shop", "arm": "v1"})
    (line,) = lines(out)
    assert list(line)[:6] == ["time", "level", "logger", "event", "experiment", "arm"]
    assert line["level"] == "WARNING" and line["logger"] == log.name
    assert line["event"] == "arm v1 of shop failed: 3 times"
    assert (line["experiment"], line["arm"]) == ("shop", "v1")
    assert RFC3339_MS_UTC.match(line["time"]), line["time"]
    written = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert before - 0.001 <= written <= time.time()
    log.info("no experiment here")
    assert "experiment" not in lines(out)[1] and "arm" not in lines(out)[1]


def test_times_are_utc_with_milliseconds() -> None:
    assert rfc3339_utc(0.5) == "1970-01-01T00:00:00.500Z"
    assert rfc3339_utc(1_700_000_000.9999) == "2023-11-14T22:13:20.999Z"  # never rounded up into .1000


def test_an_exception_is_one_string_field_on_the_same_line() -> None:
    log, out = emit(JsonLinesFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("refresh of %s failed", "shop", extra={"experiment": "shop"})
    assert out.getvalue().count("\n") == 1
    (line,) = lines(out)
    assert line["event"] == "refresh of shop failed" and line["level"] == "ERROR"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].rstrip().endswith("ValueError: boom")


class Opaque:
    def __repr__(self) -> str:
        return "<opaque thing>"


CYCLE: list[object] = []
CYCLE.append(CYCLE)


class Broken:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_extras_are_fields_and_what_json_cannot_hold_is_written_as_text() -> None:
    log, out = emit(JsonLinesFormatter())
    log.info(
        "flushed",
        extra={
            "batches": 3,
            "seconds": 0.25,
            "retried": False,
            "replica": None,
            "arms": ["v1", "v2"],
            "shares": {"v1": 0.5},
            "thing": Opaque(),
            "nested": [Opaque()],
            "tuple_keys": {(1, 2): "x"},
            "cycle": CYCLE,
            "broken": Broken(),
            "event": "an extra never replaces the event",
        },
    )
    (line,) = lines(out)
    assert line["event"] == "flushed"
    assert line["batches"] == 3 and line["seconds"] == 0.25 and line["retried"] is False and line["replica"] is None
    assert line["arms"] == ["v1", "v2"] and line["shares"] == {"v1": 0.5}
    assert line["thing"] == "<opaque thing>" and line["nested"] == ["<opaque thing>"]
    assert line["tuple_keys"] == {"(1, 2)": "x"}
    assert line["cycle"] == "[[...]]"  # no JSON for it: its repr, and the other fields as they are
    assert line["broken"] == "<unrepresentable Broken>"
    # uvicorn's copy of the message with terminal colours is not a field.
    log.info("Started server process [%d]", 7, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    assert "color_message" not in lines(out)[1]


# -- the redaction of secrets --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("formatter", "redactions"),
    [(JsonLinesFormatter(), 6), (logging.Formatter(TEXT_FORMAT), 4)],  # a text line shows no extras
    ids=["json", "text"],
)
def test_configured_secrets_are_redacted_everywhere_in_a_record(formatter: logging.Formatter, redactions: int) -> None:
    log, out = emit(formatter, ADMIN, REDIS_PASSWORD, "")  # an empty secret redacts nothing
    log.info("token %s in the arguments", ADMIN)
    log.info(f"token {ADMIN} in the message itself")
    log.info("a URL redis://:%s@host/0", REDIS_PASSWORD.replace("/", "%2F").replace("@", "%40"))
    log.info("an extra", extra={"header": f"Bearer {ADMIN}", "parts": [ADMIN], "count": 3})
    try:
        raise RuntimeError(f"AUTH {REDIS_PASSWORD} refused")
    except RuntimeError:
        log.exception("the store failed")
    text = out.getvalue()
    assert ADMIN not in text and REDIS_PASSWORD not in text and "%2F" not in text
    assert text.count(REDACTED) == redactions
    assert "in the arguments" in text and "the store failed" in text and "refused" in text


def test_a_secret_inside_a_longer_one_leaves_nothing_of_the_longer_showing() -> None:
    log, out = emit(JsonLinesFormatter(), "abc123", "abc123-longer")
    log.info("value abc123-longer, and abc123")
    assert lines(out)[0]["event"] == f"value {REDACTED}, and {REDACTED}"


def test_access_log_lines_lose_their_query_string() -> None:
    log, out = emit(JsonLinesFormatter(), logger="uvicorn.access")
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', None, None)
    record.args = ("127.0.0.1:5000", "GET", "/invoke/shop/predict?api_key=k-123", "1.1", 200)
    log.handle(record)
    assert lines(out)[0]["event"] == '127.0.0.1:5000 - "GET /invoke/shop/predict HTTP/1.1" 200'


def test_the_secrets_of_the_settings_are_the_tokens_keys_and_redis_password() -> None:
    settings = Settings(
        admin_token=ADMIN,
        feedback_token=FEEDBACK,
        secret=SECRET,
        previous_secret="old-key",
        redis_url="redis://user:p%40ss@10.0.0.7:6379/0?password=q%2Fw",
    )
    assert set(secret_values(settings)) == {ADMIN, FEEDBACK, SECRET, "old-key", "p%40ss", "p@ss", "q%2Fw", "q/w"}
    assert secret_values(Settings()) == []
    config = logging_config(settings)
    assert set(config["filters"]["secrets"]["secrets"]) == set(secret_values(settings))
    assert config["handlers"]["stderr"]["filters"] == ["secrets"]


def test_a_redis_url_is_logged_with_its_passwords_masked() -> None:
    assert masked_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert masked_url("rediss://user:pw@h/1?password=pw2&db=1") == "rediss://user:***@h/1?password=***&db=1"
    assert masked_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert masked_url("unix://:pw@/run/redis.sock") == "unix://:***@/run/redis.sock"
    assert "pw" not in masked_url("redis://[::1:pw@h/0")  # unparsable: nothing of it is shown
    assert url_passwords("redis://:a%2Fb@h/0?password=c+d") == ["a%2Fb", "a/b", "c d", "c+d"]


@pytest.mark.parametrize("password", ["s3cr#t", "s3/cr3t", "s3cr?t", "pa?ss", "123#x"])
def test_a_password_with_a_character_that_ends_the_authority_is_masked_and_refused(password: str) -> None:
    url = f"redis://user:{password}@cache.internal:6379/0"
    # urlsplit (and redis-py) would read another host and no password: found anyway, and masked.
    assert password in url_passwords(url)
    assert password not in masked_url(url) and masked_url(url).startswith("redis://user:***@")
    # Such a URL would connect without the password: refused at start, in words that do not echo it.
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={"BANDIT_REDIS_URL": url})
    assert "percent-encode" in str(refused.value) and password not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        # A `@` that redis-py reads right: in the password (it splits at the last), the query, a socket path.
        ("redis://u:p@ss@h:6379/0", "redis://u:***@h:6379/0"),
        ("redis://host:6379/0?client_name=svc@prod", "redis://host:6379/0?client_name=svc@prod"),
        ("redis://host/0?password=p@ss", "redis://host/0?password=***"),
        ("unix:///tmp/r.sock?password=pw@x", "unix:///tmp/r.sock?password=***"),
    ],
)
def test_a_url_redis_py_reads_right_is_accepted_and_masked_as_it_reads_it(url: str, masked: str) -> None:
    assert load_settings(environ={"BANDIT_REDIS_URL": url}).redis_url == url
    assert masked_url(url) == masked


# -- the setting -----------------------------------------------------------------------------------
def test_the_log_format_is_text_by_default_json_when_asked_and_nothing_else() -> None:
    assert load_settings(environ={}).log_format == "text"
    assert load_settings(environ={"BANDIT_LOG_FORMAT": "json"}).log_format == "json"
    assert load_settings({"log_format": "json"}, environ={"BANDIT_LOG_FORMAT": "text"}).log_format == "json"
    with pytest.raises(SettingsError, match=r"BANDIT_LOG_FORMAT\) must be text or json, not 'xml'"):
        load_settings(environ={"BANDIT_LOG_FORMAT": "xml"})


def test_serve_refuses_an_unknown_log_format_naming_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "serve", "--log-format", "yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "BANDIT_LOG_FORMAT) must be text or json, not 'yaml'" in result.stderr
    assert "Traceback" not in result.stderr


# -- real services ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def passworded_redis() -> Iterator[str]:
    """A throwaway redis-server that wants a password; its URL carries the password percent-encoded."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH")
    port = free_port()
    throwaway = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, "--port", str(port), *throwaway, "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        encoded = REDIS_PASSWORD.replace("/", "%2F").replace("@", "%40")
        yield f"redis://:{encoded}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


READY = " ready, state in Redis at "


def both_workers_ready(service: ServiceProcess) -> None:
    """start() waits for one worker to answer; the other may still be starting."""
    wait_until(lambda: service.log().count(READY) >= 2, 30, "both workers ready")


@dataclass(frozen=True)
class Run:
    """What a stopped service wrote, and the names it was driven with."""

    log: str
    redis_url: str
    live: str
    dead: str


def drive(service: ServiceProcess, models: ModelServers) -> tuple[str, str]:
    """Management, invokes, feedback with good and bad tokens, refusals and a failing upstream."""
    live, dead = f"logs-{uuid.uuid4().hex[:8]}", f"logs-dead-{uuid.uuid4().hex[:8]}"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=service.url, timeout=10) as client:
        assert client.post("/api/experiments", json=experiment_body(live, models), headers=admin).status_code == 201
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every request to it fails
        dead_body = {"name": dead, "arms": [{"name": "v1", "url": closed}]}
        assert client.post("/api/experiments", json=dead_body, headers=admin).status_code == 201
        decisions = []
        for _ in range(6):
            answer = client.post(f"/invoke/{live}/predict", json={"x": 1}, headers={"Authorization": f"Bearer {WRONG}"})
            assert answer.status_code == 200
            decisions.append(answer.headers["X-Bandit-Decision"])
        # The caller's own credentials travel to a failing upstream, in a header and a query.
        failed = client.post(f"/invoke/{dead}/predict?token={ADMIN}", json={}, headers=admin)
        assert failed.status_code == 502
        feedback = {"Authorization": f"Bearer {FEEDBACK}"}
        assert (
            client.post("/feedback", json={"decision": decisions[0], "reward": 1}, headers=feedback).status_code == 202
        )
        wrong = {"Authorization": f"Bearer {WRONG}"}
        assert client.post("/feedback", json={"decision": decisions[1], "reward": 1}, headers=wrong).status_code == 403
        assert client.get("/api/experiments", headers=wrong).status_code == 403
        assert client.get("/api/experiments/no-such-experiment", headers=admin).status_code == 404
        assert client.patch(f"/api/experiments/{live}", json={"arms": "none"}, headers=admin).status_code == 422
        assert client.post(f"/api/experiments/{live}/pause", headers=admin).status_code == 200
        assert client.post(f"/api/experiments/{live}/promote", json={"arm": "v3"}, headers=admin).status_code == 200
        assert client.post(f"/api/experiments/{live}/rollback", headers=admin).status_code == 200
    time.sleep(0.3)  # the recorder's flush and the last lines
    return live, dead


@pytest.fixture(scope="module")
def json_run(passworded_redis: str, models: ModelServers) -> Run:
    """A two-worker service logging JSON, on a Redis with a password, driven and stopped."""
    service = ServiceProcess(
        passworded_redis,
        BANDIT_LOG_FORMAT="json",
        BANDIT_WORKERS="2",
        BANDIT_ADMIN_TOKEN=ADMIN,
        BANDIT_FEEDBACK_TOKEN=FEEDBACK,
        BANDIT_SECRET=SECRET,
        BANDIT_FEEDBACK_OPEN="",
    )
    service.log_path.unlink(missing_ok=True)  # this run's lines only
    service.start()
    try:
        both_workers_ready(service)
        live, dead = drive(service, models)
    finally:
        service.stop()
    return Run(service.log(), passworded_redis, live, dead)


def json_lines(log: str) -> list[dict[str, Any]]:
    parsed = []
    for number, line in enumerate(log.splitlines(), 1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
    return parsed


def test_every_line_of_a_two_worker_service_is_a_json_object(json_run: Run) -> None:
    records = json_lines(json_run.log)
    assert len(records) >= 20
    for record in records:
        assert RFC3339_MS_UTC.match(record["time"]) and record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
        assert isinstance(record["event"], str) and record["logger"]
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "mab", "mab.api", "mab.proxy"} <= loggers
    # Each worker says it is ready: both write JSON, not only the process that started them.
    ready = [record for record in records if record["logger"] == "mab" and READY in record["event"]]
    assert len(ready) == 2
    assert all(record["event"].endswith(masked_url(json_run.redis_url)) for record in ready)
    assert ":***@127.0.0.1:" in ready[0]["event"]
    assert sum("Finished server process" in record["event"] for record in records) == 2


def test_lines_about_one_experiment_carry_it_and_its_arm(json_run: Run) -> None:
    records = json_lines(json_run.log)
    changes = [r["event"] for r in records if r.get("experiment") == json_run.live and r["logger"] == "mab.api"]
    assert changes[0] == f"experiment {json_run.live} created: 3 arms, policy thompson"
    assert any(event.startswith(f"experiment {json_run.live} paused") for event in changes)
    promoted = [r for r in records if r.get("experiment") == json_run.live and "promoted" in r["event"]]
    assert [record["arm"] for record in promoted] == ["v3"]
    failures = [r for r in records if r.get("experiment") == json_run.dead and r["level"] == "WARNING"]
    assert failures and all(record["arm"] == "v1" for record in failures), failures
    assert any(record["logger"] == "mab.proxy" for record in failures)


def test_no_line_holds_a_token_a_key_or_the_redis_password(json_run: Run) -> None:
    encoded = REDIS_PASSWORD.replace("/", "%2F").replace("@", "%40")
    for secret in (ADMIN, FEEDBACK, SECRET, WRONG, REDIS_PASSWORD, encoded):
        assert secret not in json_run.log
    assert "failed" in json_run.log  # the failing upstream, whose request carried the tokens, was logged


def test_a_granian_service_logs_json_from_every_worker(passworded_redis: str, models: ModelServers) -> None:
    service = ServiceProcess(
        passworded_redis,
        BANDIT_SERVER="granian",
        BANDIT_LOG_FORMAT="json",
        BANDIT_WORKERS="2",
        BANDIT_ADMIN_TOKEN=ADMIN,
        BANDIT_SECRET=SECRET,
    )
    service.log_path.unlink(missing_ok=True)
    service.start()
    try:
        both_workers_ready(service)
        name = f"logs-granian-{uuid.uuid4().hex[:8]}"
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=service.url, timeout=10) as client:
            assert client.post("/api/experiments", json=experiment_body(name, models), headers=admin).status_code == 201
            assert client.post(f"/invoke/{name}/predict", json={}, headers=admin).status_code == 200
    finally:
        service.stop()
    records = json_lines(service.log())
    assert sum(READY in record["event"] for record in records) == 2
    assert {"_granian", "mab", "mab.api"} <= {record["logger"] for record in records}
    assert any(record.get("experiment") == name for record in records)
    assert ADMIN not in service.log() and SECRET not in service.log() and REDIS_PASSWORD not in service.log()


def test_the_text_format_reads_as_before(service: ServiceProcess, admin: httpx.Client, models: ModelServers) -> None:
    start = len(service.log())
    name = f"logs-text-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
    time.sleep(0.2)
    log = service.log()
    text_line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
    assert re.search(r"^\S+ \S+ INFO mab: mab \S+ ready, state in Redis at redis://127\.0\.0\.1:", log, re.M)
    written = log[start:].splitlines()
    assert written and all(text_line.match(line) for line in written), written
    assert any(line.endswith(f"INFO mab.api: experiment {name} created: 3 arms, policy thompson") for line in written)
    assert ADMIN_TOKEN not in log


def test_an_unhandled_error_on_an_experiment_route_logs_the_experiment() -> None:
    @get("/api/experiments/{name:str}/boom", sync_to_thread=False)
    def boom(name: str) -> None:
        raise RuntimeError("a bug of ours")

    app = Litestar([boom], exception_handlers={Exception: unexpected_error}, logging_config=None)
    log, out = emit(JsonLinesFormatter())
    api_log = logging.getLogger("mab.api")
    api_log.addHandler(log.handlers[0])
    try:
        with TestClient(app) as client:
            assert client.get("/api/experiments/shop/boom").status_code == 500
    finally:
        api_log.removeHandler(log.handlers[0])
    (line,) = lines(out)
    assert line["event"] == "unhandled error on GET /api/experiments/shop/boom"
    assert line["experiment"] == "shop" and "RuntimeError: a bug of ours" in line["exc"]
