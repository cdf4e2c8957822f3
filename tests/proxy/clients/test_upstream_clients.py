"""Every upstream client against real loopback servers: same behaviour, same errors.

Most tests talk to `WireServer`, a tiny HTTP/1.1 server written here on asyncio streams,
so they can see the request as it came over the wire (framing headers, repeated fields,
the client's port) and make the upstream misbehave (sleep, stall, cut a body short).
Where a library cannot do what a test asks, the gap is listed in KNOWN_GAPS and the test
is a strict xfail for that client: it fails loudly the day the gap closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import importlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs

import pytest

from bandit.cli.local_redis import free_port
from proxy.clients.base import Headers, Origin, RequestBody, Timeouts, UpstreamClient, UpstreamResponse
from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from tests.servers import ModelServers

# id -> (module, class); a client whose library is not installed is skipped.
CLIENT_CLASSES = {
    "aiohttp": ("proxy.clients.aiohttp", "AiohttpUpstreamClient"),
    "httpx": ("proxy.clients.httpx", "HttpxUpstreamClient"),
    "pyreqwest": ("proxy.clients.pyreqwest", "PyreqwestUpstreamClient"),
    "aiosonic": ("proxy.clients.aiosonic", "AiosonicUpstreamClient"),
    "httpx-aiohttp": ("proxy.clients.httpx_aiohttp", "HttpxAiohttpUpstreamClient"),
}

# (test name, client id) -> what the client does instead.
_REQUOTED = "the transport hands aiohttp str(url), which yarl requotes: %2F in a query becomes /, %41 becomes A"
_HEADERS_AS_STR = "request header values go out as str, UTF-8 encoded: the byte 0xe9 leaves as 0xc3 0xa9"
KNOWN_GAPS = {
    ("test_sends_method_target_headers_body_and_streams_back", "httpx-aiohttp"): _REQUOTED,
    ("test_the_path_is_sent_exactly_as_given", "httpx-aiohttp"): _REQUOTED,
    ("test_the_query_is_sent_exactly_as_given", "httpx-aiohttp"): _REQUOTED,
    ("test_the_query_is_sent_exactly_as_given", "pyreqwest"): "the WHATWG URL parser (Rust url crate) writes "
    "' in a query as %27",
    ("test_adds_no_headers_of_its_own", "pyreqwest"): "reqwest adds Accept: */* and User-Agent: python-pyreqwest/… "
    "to a request without them; no setting removes them",
    ("test_adds_no_headers_of_its_own", "aiosonic"): "aiosonic adds User-Agent: aiosonic/… and, to a whole "
    "body sent without one, Content-Type: text/plain",
    ("test_get_with_a_body_sends_the_body", "aiosonic"): "aiosonic drops the body of a GET",
    ("test_the_path_is_sent_exactly_as_given", "aiosonic"): "aiosonic splits the URL with urllib's urlparse and "
    "sends only its .path: a ';…' in the last segment is dropped",
    ("test_header_bytes_above_0x7f_pass_both_ways", "aiohttp"): _HEADERS_AS_STR,
    ("test_header_bytes_above_0x7f_pass_both_ways", "httpx-aiohttp"): _HEADERS_AS_STR,
    ("test_header_bytes_above_0x7f_pass_both_ways", "pyreqwest"): _HEADERS_AS_STR + "; such a response header "
    "fails the request (UpstreamUnreachable)",
    ("test_header_bytes_above_0x7f_pass_both_ways", "aiosonic"): "response headers are decoded as UTF-8: such "
    "a header fails the request (UpstreamUnreachable)",
}


def _load(client_id: str) -> Callable[[], UpstreamClient]:
    module_name, class_name = CLIENT_CLASSES[client_id]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        pytest.skip(f"{client_id} is not installed: {error}")
    factory: Callable[[], UpstreamClient] = getattr(module, class_name)
    return factory


@pytest.fixture(params=list(CLIENT_CLASSES))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamClient]:
    client_id: str = request.param
    gap = KNOWN_GAPS.get((request.node.originalname, client_id))
    if gap:
        request.applymarker(pytest.mark.xfail(strict=True, reason=gap))
    instance = _load(client_id)()
    yield instance
    await instance.close()


# --- the wire server ------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as it arrived."""

    method: bytes
    target: bytes
    headers: Headers
    body: bytes
    port: int  # the client's port: one per connection

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "method": self.method.decode("latin-1"),
                "target": self.target.decode("latin-1"),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
                "body": self.body.decode("latin-1"),
                "port": self.port,
            }
        ).encode()


def pattern(size: int) -> bytes:
    """`size` bytes that are not all alike, so a lost or repeated chunk shows."""
    block = hashlib.sha256(b"mab").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def _read_body(reader: asyncio.StreamReader, headers: Headers) -> bytes:
    if any(value.lower() == b"chunked" for name, value in headers if name.lower() == b"transfer-encoding"):
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(data[:-2])
    lengths = [value for name, value in headers if name.lower() == b"content-length"]
    return await reader.readexactly(int(lengths[0])) if lengths else b""


class WireServer:
    """HTTP/1.1 on loopback, in the test's own event loop, recording every request byte for byte.

    Routes: /echo (the request as JSON), /bytes?n=N[&chunked=1], /sleep?s=S (before the
    headers), /stall?s=S (mid-body), /truncate (a body cut short), /close (no answer at all),
    /redirect, /gzip,
    /cookies (two Set-Cookie), /latin1 (a header value with a byte above 0x7f).
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> WireServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def origin(self) -> Origin:
        return Origin("http", "127.0.0.1", self.port, "")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        port = writer.get_extra_info("peername")[1]
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                line, *fields = head[:-4].split(b"\r\n")
                method, target, _ = line.split(b" ", 2)
                headers = [(name, value.strip()) for name, _, value in (f.partition(b":") for f in fields)]
                seen = Seen(method, target, headers, await _read_body(reader, headers), port)
                self.seen.append(seen)
                if not await self._answer(seen, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the server is stopping
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        """Write the response; False when the connection is to be dropped."""
        path, _, query = seen.target.decode().partition("?")
        args = {key: values[0] for key, values in parse_qs(query).items()}
        if path.startswith("/echo"):
            await _respond(writer, 200, [(b"content-type", b"application/json")], seen.as_json())
        elif path == "/bytes":
            body = pattern(int(args["n"]))
            chunked = args.get("chunked") == "1"
            framing = (b"transfer-encoding", b"chunked") if chunked else (b"content-length", str(len(body)).encode())
            writer.write(b"HTTP/1.1 200 OK\r\n" + b"%s: %s\r\n\r\n" % framing)
            for start in range(0, len(body), 64 * 1024):
                piece = body[start : start + 64 * 1024]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif path == "/sleep":
            await asyncio.sleep(float(args["s"]))
            await _respond(writer, 200, [], b"slept")
        elif path == "/stall":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst")
            await writer.drain()
            await asyncio.sleep(float(args["s"]))
            writer.write(b"-last")
            await writer.drain()
        elif path == "/truncate":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
            await writer.drain()
            return False
        elif path == "/close":
            return False
        elif path == "/redirect":
            await _respond(writer, 302, [(b"location", b"/echo")], b"moved")
        elif path == "/gzip":
            await _respond(writer, 200, [(b"content-encoding", b"gzip")], gzip.compress(b"hello " * 100))
        elif path == "/cookies":
            await _respond(writer, 200, [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")], b"")
        elif path == "/latin1":
            await _respond(writer, 200, [(b"x-latin", b"caf\xe9")], b"")
        else:
            await _respond(writer, 404, [], b"no such route")
        return True


async def _respond(writer: asyncio.StreamWriter, status: int, headers: Headers, body: bytes) -> None:
    lines = [b"HTTP/1.1 %d X" % status, *(b"%s: %s" % pair for pair in headers), b"content-length: %d" % len(body)]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()


@pytest.fixture
async def wire() -> AsyncIterator[WireServer]:
    server = await WireServer().start()
    yield server
    await server.stop()


@contextlib.contextmanager
def unaccepting_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a new connection hangs in its handshake."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


FAST = Timeouts(5, 5)


async def fetch(
    client: UpstreamClient,
    origin: Origin,
    target: str,
    method: str = "GET",
    headers: Headers | None = None,
    body: RequestBody = b"",
    timeouts: Timeouts = FAST,
) -> tuple[UpstreamResponse, list[bytes]]:
    """Send one request and read its body to the end; the chunks as they came."""
    response = await client.send(method, origin, target, headers or [], body, timeouts)
    try:
        chunks = [chunk async for chunk in response.body()]
    finally:
        await response.close()
    return response, chunks


def header(response: UpstreamResponse, name: bytes) -> list[bytes]:
    return [value for key, value in response.headers if key.lower() == name]


async def stream_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


# --- what is sent and what comes back ---------------------------------------------------------------


async def test_sends_method_target_headers_body_and_streams_back(models: ModelServers, client: UpstreamClient) -> None:
    origin = Origin.from_url(models.urls["v1"])
    response, chunks = await fetch(
        client, origin, "/echo/a%20b?q=%2F", "PATCH", [(b"x-test", b"1")], b"body bytes", Timeouts(5, 5)
    )
    echoed = json.loads(b"".join(chunks))
    assert response.status == 200
    assert (echoed["method"], echoed["raw_path"], echoed["query"], echoed["body"]) == (
        "PATCH",
        "/echo/a%20b",
        "q=%2F",
        "body bytes",
    )
    assert ["x-test", "1"] in echoed["headers"]
    assert (b"content-type", b"application/json") in [(k.lower(), v) for k, v in response.headers]


async def test_the_path_is_sent_exactly_as_given(wire: WireServer, client: UpstreamClient) -> None:
    # Percent-encodings are not for the client to decode or normalise: %2F is not /.
    target = "/echo/%7Ea%2Fb%41;p=1/c%20d/~!$'()*,;:@&=+"
    await fetch(client, wire.origin, target)
    assert wire.seen[0].target.decode() == target


async def test_the_query_is_sent_exactly_as_given(wire: WireServer, client: UpstreamClient) -> None:
    target = "/echo?x=%2F%3D%26&y=%41+b&z=~!$'()*,;:@/?"
    await fetch(client, wire.origin, target)
    assert wire.seen[0].target.decode() == target


async def test_adds_no_headers_of_its_own(wire: WireServer, client: UpstreamClient) -> None:
    await fetch(client, wire.origin, "/echo", "POST", [(b"x-test", b"1")], b"{}")
    names = {name.lower() for name, _ in wire.seen[0].headers}
    assert names - {b"host", b"connection", b"content-length"} == {b"x-test"}


async def test_a_whole_body_is_sent_with_its_length(wire: WireServer, client: UpstreamClient) -> None:
    await fetch(client, wire.origin, "/echo", "PUT", [], b"0123456789")
    seen = wire.seen[0]
    assert (seen.body, seen.values(b"content-length"), seen.values(b"transfer-encoding")) == (
        b"0123456789",
        [b"10"],
        [],
    )


async def test_get_with_a_body_sends_the_body(wire: WireServer, client: UpstreamClient) -> None:
    await fetch(client, wire.origin, "/echo", "GET", [], b"query document")
    assert wire.seen[0].body == b"query document"


async def test_repeated_request_fields_all_arrive_in_order(wire: WireServer, client: UpstreamClient) -> None:
    await fetch(client, wire.origin, "/echo", headers=[(b"x-multi", b"a"), (b"x-other", b"z"), (b"x-multi", b"b")])
    # As two fields or combined into one (RFC 9110 §5.3): the same to the upstream.
    assert b", ".join(wire.seen[0].values(b"x-multi")) == b"a, b"


async def test_repeated_response_fields_stay_separate(wire: WireServer, client: UpstreamClient) -> None:
    response, _ = await fetch(client, wire.origin, "/cookies")
    # Set-Cookie may never be combined into one field.
    assert header(response, b"set-cookie") == [b"a=1; Path=/", b"b=2; Path=/"]


async def test_header_bytes_above_0x7f_pass_both_ways(wire: WireServer, client: UpstreamClient) -> None:
    response, _ = await fetch(client, wire.origin, "/latin1", headers=[(b"x-latin", b"caf\xe9")])
    assert (wire.seen[0].values(b"x-latin"), header(response, b"x-latin")) == ([b"caf\xe9"], [b"caf\xe9"])


async def test_redirects_are_returned_not_followed(wire: WireServer, client: UpstreamClient) -> None:
    response, chunks = await fetch(client, wire.origin, "/redirect")
    assert (response.status, header(response, b"location"), b"".join(chunks)) == (302, [b"/echo"], b"moved")
    assert len(wire.seen) == 1


async def test_compressed_bodies_come_back_still_compressed(wire: WireServer, client: UpstreamClient) -> None:
    response, chunks = await fetch(client, wire.origin, "/gzip", headers=[(b"accept-encoding", b"gzip")])
    assert header(response, b"content-encoding") == [b"gzip"]
    assert gzip.decompress(b"".join(chunks)) == b"hello " * 100


# --- streamed bodies ------------------------------------------------------------------------------


STREAMED = (b"alpha-", b"beta-", b"gamma-" * 20_000, b"", b"omega")


async def test_streamed_body_without_a_length_is_sent_chunked(wire: WireServer, client: UpstreamClient) -> None:
    await fetch(client, wire.origin, "/echo", "POST", [], stream_of(*STREAMED))
    seen = wire.seen[0]  # the empty chunk among them must not end the body
    assert seen.body == b"".join(STREAMED)
    assert (seen.values(b"transfer-encoding"), seen.values(b"content-length")) == ([b"chunked"], [])


async def test_streamed_body_with_a_length_is_sent_with_that_length(wire: WireServer, client: UpstreamClient) -> None:
    length = str(len(b"".join(STREAMED))).encode()
    await fetch(client, wire.origin, "/echo", "POST", [(b"content-length", length)], stream_of(*STREAMED))
    seen = wire.seen[0]
    assert seen.body == b"".join(STREAMED)
    assert (seen.values(b"content-length"), seen.values(b"transfer-encoding")) == ([length], [])


async def test_headers_come_back_before_the_body_ends(wire: WireServer, client: UpstreamClient) -> None:
    started = time.monotonic()
    response = await client.send("GET", wire.origin, "/stall?s=1.5", [], b"", FAST)
    try:
        assert response.status == 200
        assert time.monotonic() - started < 1.0, "the response was held back until its body ended"
        assert b"".join([chunk async for chunk in response.body()]) == b"first-last"
    finally:
        await response.close()


async def test_a_failing_request_stream_is_an_upstream_error(wire: WireServer, client: UpstreamClient) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("the client went away")

    with pytest.raises(UpstreamError):
        await fetch(client, wire.origin, "/echo", "POST", [], broken())


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_large_response_streams_back_chunk_by_chunk(
    wire: WireServer, client: UpstreamClient, chunked: bool
) -> None:
    size = 20 * 1024 * 1024
    response, chunks = await fetch(client, wire.origin, f"/bytes?n={size}&chunked={int(chunked)}")
    assert response.status == 200
    assert sum(map(len, chunks)) == size
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(pattern(size)).digest()
    assert len(chunks) >= 20 and max(map(len, chunks)) <= 4 * 1024 * 1024, "not streamed"


async def test_closing_a_half_read_response_leaves_the_client_usable(wire: WireServer, client: UpstreamClient) -> None:
    response = await client.send("GET", wire.origin, "/bytes?n=20000000", [], b"", FAST)
    body = response.body()
    assert await anext(body)
    await body.aclose()  # type: ignore[attr-defined]
    await response.close()
    again, chunks = await fetch(client, wire.origin, "/echo/after")
    assert again.status == 200 and json.loads(b"".join(chunks))["target"] == "/echo/after"


async def test_a_cancelled_request_leaves_the_client_usable(wire: WireServer, client: UpstreamClient) -> None:
    # What happens when the caller goes away mid-request: the task forwarding for it is cancelled.
    pending = asyncio.create_task(client.send("GET", wire.origin, "/sleep?s=3", [], b"", FAST))
    await asyncio.sleep(0.2)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    response, chunks = await fetch(client, wire.origin, "/echo/after")
    assert response.status == 200 and json.loads(b"".join(chunks))["target"] == "/echo/after"


# --- connections ----------------------------------------------------------------------------------


async def test_keeps_the_connection_alive(wire: WireServer, client: UpstreamClient) -> None:
    for target in ("/echo/1", "/bytes?n=300000", "/echo/2", "/bytes?n=300000&chunked=1", "/echo/3"):
        response, _ = await fetch(client, wire.origin, target)
        assert response.status == 200
    assert wire.connections == 1
    assert len({seen.port for seen in wire.seen}) == 1


async def test_concurrent_requests_each_get_their_own_answer(wire: WireServer, client: UpstreamClient) -> None:
    async def one(i: int) -> tuple[int, dict[str, str]]:
        response, chunks = await fetch(client, wire.origin, f"/echo/{i}", "POST", [], f"body {i}".encode())
        return response.status, json.loads(b"".join(chunks))

    results = await asyncio.gather(*(one(i) for i in range(64)))
    assert [(status, e["target"], e["body"]) for status, e in results] == [
        (200, f"/echo/{i}", f"body {i}") for i in range(64)
    ]


# --- failures -------------------------------------------------------------------------------------


async def test_refused_connection_is_connect_failed(client: UpstreamClient) -> None:
    with pytest.raises(UpstreamConnectFailed) as caught:
        await client.send("GET", Origin("http", "127.0.0.1", free_port(), ""), "/", [], b"", FAST)
    assert caught.value.retryable and caught.value.status_code == 502


async def test_connection_not_accepted_in_time_is_connect_timeout(client: UpstreamClient) -> None:
    started = time.monotonic()
    with unaccepting_port() as port, pytest.raises(UpstreamConnectTimeout) as caught:
        await client.send("GET", Origin("http", "127.0.0.1", port, ""), "/", [], b"", Timeouts(0.3, 10))
    assert caught.value.retryable and caught.value.status_code == 504
    assert time.monotonic() - started < 5


async def test_slow_headers_are_a_read_timeout_not_retryable(wire: WireServer, client: UpstreamClient) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await client.send("GET", wire.origin, "/sleep?s=3", [], b"", Timeouts(10, 0.3))
    assert not isinstance(caught.value, UpstreamConnectTimeout)
    assert not caught.value.retryable and caught.value.status_code == 504
    assert time.monotonic() - started < 2.5


async def test_connect_timeout_does_not_bound_the_wait_for_the_answer(wire: WireServer, client: UpstreamClient) -> None:
    response, chunks = await fetch(client, wire.origin, "/sleep?s=0.8", timeouts=Timeouts(0.2, 10))
    assert (response.status, b"".join(chunks)) == (200, b"slept")


async def test_a_stalled_body_is_a_read_timeout(wire: WireServer, client: UpstreamClient) -> None:
    response = await client.send("GET", wire.origin, "/stall?s=3", [], b"", Timeouts(10, 0.3))
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout):
            _ = [chunk async for chunk in response.body()]
    finally:
        await response.close()
    assert time.monotonic() - started < 2.5


async def test_a_connection_closed_without_an_answer_is_unreachable_not_retryable(
    wire: WireServer, client: UpstreamClient
) -> None:
    # The request went out, so it must not be sent to another arm: not a connect failure.
    with pytest.raises(UpstreamUnreachable) as caught:
        await client.send("POST", wire.origin, "/close", [], b"order #1", FAST)
    assert not caught.value.retryable and caught.value.status_code == 502
    assert [seen.body for seen in wire.seen] == [b"order #1"]


async def test_a_body_cut_short_is_unreachable(wire: WireServer, client: UpstreamClient) -> None:
    response = await client.send("GET", wire.origin, "/truncate", [], b"", FAST)
    try:
        with pytest.raises(UpstreamUnreachable):
            _ = [chunk async for chunk in response.body()]
    finally:
        await response.close()
