"""How ProxyApp relays an answer, in process, with every upstream client against a real
loopback upstream: one write for a small answer of declared length, the connection kept
for the next request, and headers at once when the length is unknown."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import numpy as np
import pytest

from bandit.core.counters import ArmCounters
from bandit.core.models import Experiment
from proxy.app import ProxyApp
from proxy.clients.base import Timeouts, UpstreamClient
from proxy.snapshot import Snapshot
from tests.proxy.bare_proxy import bare_proxy
from tests.proxy.clients.test_upstream_clients import CLIENT_CLASSES, _load

ANSWER = b'{"prediction": 0.5}'


class _Upstream(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive: /small answers with a Content-Length, /late sends its headers,
    waits, then a chunked body."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/late":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            time.sleep(1.0)
            self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    _Upstream.connections = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Registry:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def get(self, name: str) -> Snapshot | None:
        return self.snapshot if name == self.snapshot.name else None


def _proxy(client: UpstreamClient, url: str) -> ProxyApp:
    experiment = msgspec.convert(
        {"name": "relay", "arms": [{"name": "a", "url": url}], "policy": {"kind": "static"}, "incarnation": "i1"},
        Experiment,
    )
    counters = ArmCounters("i1", *[np.zeros(1) for _ in range(13)])
    snapshot = Snapshot.build(experiment, counters, np.random.default_rng(1), Timeouts(2.0, 5.0))
    return bare_proxy(_Registry(snapshot), client)


async def _invoke(proxy: ProxyApp, path: str) -> list[tuple[float, dict[str, Any]]]:
    """The ASGI messages the proxy sends for one request, each with when it was sent."""
    sent: list[tuple[float, dict[str, Any]]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/invoke/relay{path}",
        "raw_path": f"/invoke/relay{path}".encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append((time.monotonic(), message))

    await proxy(scope, receive, send)
    return sent


@pytest.fixture(params=list(CLIENT_CLASSES))
async def client(request: pytest.FixtureRequest) -> Any:
    instance = _load(request.param)()
    yield instance
    await instance.close()


async def test_small_answers_go_out_in_one_write_and_keep_the_upstream_connection(
    client: UpstreamClient, upstream: str
) -> None:
    proxy = _proxy(client, upstream)
    for _ in range(5):
        sent = await _invoke(proxy, "/small")
        start, body = (message for _, message in sent)
        assert start["status"] == 200 and dict(start["headers"])[b"x-bandit-arm"] == b"a"
        assert body == {"type": "http.response.body", "body": ANSWER}
    # Each answer read to its end hands the connection back: five requests, one connection.
    assert _Upstream.connections == 1


async def test_headers_of_an_answer_of_unknown_length_go_out_before_its_body(
    client: UpstreamClient, upstream: str
) -> None:
    started = time.monotonic()
    sent = await _invoke(_proxy(client, upstream), "/late")
    (headers_at, start), *body = sent
    assert start["type"] == "http.response.start" and headers_at - started < 0.8
    assert b"".join(message.get("body", b"") for _, message in body) == b"hello"
    assert body[-1][0] - started >= 1.0


def test_the_upstream_fixture_speaks_keep_alive(upstream: str) -> None:
    """The connection count above means something only if the upstream keeps connections open."""
    host, port = upstream.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        request = b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        for _ in range(2):
            conn.sendall(request)
            answer = b""
            while not answer.endswith(ANSWER):
                answer += conn.recv(4096)
    assert _Upstream.connections == 1
