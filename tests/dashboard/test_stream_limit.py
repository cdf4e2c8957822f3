"""The cap on events streams open at once (BANDIT_MAX_EVENT_STREAMS), through running services."""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import experiment_body
from tests.dashboard.test_page_security import browser  # noqa: F401  (the fixture)
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

CAP = 3


@dataclass(frozen=True)
class Watched:
    """A service of the test's own and an experiment on it to watch."""

    service: ServiceProcess
    name: str

    @property
    def events(self) -> str:
        return f"{self.service.url}/api/experiments/{self.name}/events"

    @property
    def page(self) -> str:
        return f"{self.service.url}/dashboard/{self.name}"


def _started(redis_url: str, models: ModelServers, **settings: str) -> Watched:
    service = ServiceProcess(redis_url, **settings).start()
    name = f"capped-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        admin.post("/api/experiments", json=experiment_body(name, models)).raise_for_status()
    return Watched(service, name)


@pytest.fixture(scope="module")
def capped(clean_test_db: str, models: ModelServers) -> Iterator[Watched]:
    """A service serving at most CAP events streams at once."""
    watched = _started(clean_test_db, models, BANDIT_MAX_EVENT_STREAMS=str(CAP))
    yield watched
    watched.service.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _open(client: httpx.Client, url: str) -> httpx.Response:
    """The answer to a request for the stream, its head read, its body not."""
    return client.send(client.build_request("GET", url), stream=True)


class _Stream:
    """An open events stream. Its lines come from one iterator kept for its life: httpx closes the
    connection when a response's line iterator is dropped before the end."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def first_event(self) -> str:
        lines: list[str] = []
        for line in self.lines:
            if line == "" and lines:
                return "\n".join(lines)
            lines.append(line)
        raise AssertionError("the stream ended before its first event")

    def read_to_the_end(self) -> None:
        for _ in self.lines:
            pass

    def close(self) -> None:
        self.response.close()


@contextlib.contextmanager
def _streams(client: httpx.Client, url: str, count: int) -> Iterator[list[_Stream]]:
    """`count` streams open at once, closed on exit; opened as soon as the service allows them
    (a slot given back by a client that left is free once the service has seen it leave)."""
    held: list[_Stream] = []

    def one_more() -> bool:
        response = _open(client, url)
        if response.status_code == 200:
            held.append(_Stream(response))
            return True
        response.close()
        return False

    try:
        for _ in range(count):
            wait_until(one_more, 10, f"events stream {len(held) + 1} of {count} opened")
        assert all(stream.response.headers["content-type"].startswith("text/event-stream") for stream in held)
        yield held
    finally:
        for stream in held:
            stream.close()


def _refused(client: httpx.Client, url: str) -> httpx.Response:
    response = _open(client, url)
    try:
        assert response.status_code == 503, f"a stream past the cap answered {response.status_code}"
        response.read()
    finally:
        response.close()
    return response


def test_streams_past_the_cap_are_refused_with_503_until_one_closes(capped: Watched, client: httpx.Client) -> None:
    url = capped.events
    with _streams(client, url, CAP) as held:
        assert all("event: snapshot" in stream.first_event() for stream in held)
        refusal = _refused(client, url)
        assert refusal.headers["content-type"].startswith("application/json")
        assert refusal.json() == {
            "status_code": 503,
            "detail": "too many events streams open: this replica serves at most 3 at once "
            "(BANDIT_MAX_EVENT_STREAMS); retry in 5 s",
        }
        assert refusal.headers["retry-after"] == "5"
        # One stream closes: its slot is free again, and only that one.
        held.pop().close()
        with _streams(client, url, 1):
            _refused(client, url)


def _leave_before_the_answer(url: str) -> None:
    """Ask for the stream over a bare socket and hang up before the answer comes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as connection:
        connection.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())


@pytest.mark.parametrize("leaving", ["after the head", "after an event", "before the answer"])
def test_a_client_that_leaves_gives_its_slot_back(capped: Watched, client: httpx.Client, leaving: str) -> None:
    url = capped.events
    for _ in range(3):  # more clients than slots leave, round after round
        if leaving == "before the answer":
            for _ in range(2 * CAP):
                _leave_before_the_answer(url)
        else:
            with _streams(client, url, CAP) as held:
                if leaving == "after an event":
                    for stream in held:
                        stream.first_event()
    # Every slot is free again, and the cap still holds.
    with _streams(client, url, CAP):
        _refused(client, url)


def test_streams_that_reach_their_max_time_give_their_slot_back(
    clean_test_db: str, models: ModelServers, client: httpx.Client
) -> None:
    watched = _started(clean_test_db, models, BANDIT_MAX_EVENT_STREAMS="2", BANDIT_EVENTS_STREAM_MAX="1")
    try:
        for _ in range(2):
            with _streams(client, watched.events, 2) as held:
                _refused(client, watched.events)
                started = time.monotonic()
                for stream in held:
                    stream.read_to_the_end()  # the service ends each after a second
                assert time.monotonic() - started < 5
    finally:
        watched.service.stop()


def test_each_worker_holds_its_share_of_the_cap(clean_test_db: str, models: ModelServers, client: httpx.Client) -> None:
    # 3 over 2 workers: 2 each, so a replica holds at most 4, and one of 5 is refused at least.
    watched = _started(clean_test_db, models, BANDIT_MAX_EVENT_STREAMS="3", BANDIT_WORKERS="2")
    held: list[httpx.Response] = []
    refusals: list[httpx.Response] = []
    try:
        for _ in range(5):
            response = _open(client, watched.events)
            (held if response.status_code == 200 else refusals).append(response)
        assert len(held) <= 4 and refusals
        refusals[0].read()
        assert (
            "at most 3 at once (BANDIT_MAX_EVENT_STREAMS), 2 in each of its 2 workers" in (refusals[0].json()["detail"])
        )
    finally:
        for response in held + refusals:
            response.close()
        watched.service.stop()


def test_a_refused_page_tries_again_later_without_spinning_and_goes_live(
    browser: Browser,  # noqa: F811  (the fixture)
    capped: Watched,
    client: httpx.Client,
) -> None:
    page = browser.new_page()
    streams_asked: list[str] = []
    page.on("request", lambda request: streams_asked.append(request.url) if request.url == capped.events else None)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        with _streams(client, capped.events, CAP) as held:
            page.goto(capped.page)
            expect(page.locator("#connection")).to_have_text(re.compile(r"not connected; trying again in \d+ s"))
            time.sleep(3)  # the service asks for 5 s (Retry-After): the page waits at least that long
            assert len(streams_asked) == 1
            held.pop().close()
            expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
        assert len(streams_asked) == 2
        expect(page.locator("#arms tbody tr")).to_have_count(3)
    finally:
        page.close()  # its stream too: the module's service is capped
    assert errors == [], errors
