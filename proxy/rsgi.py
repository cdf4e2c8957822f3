"""The proxy behind granian's RSGI interface: the same forwarding as the ASGI app, fewer layers.

RSGI (granian's own interface) hands over the request as a scope object and a protocol
whose methods write the answer, with no message dicts in between. Header text is turned
into bytes once, as ASGI gives them, so everything past this module is the same for both
interfaces. BENCHMARKS.md measures it against uvicorn.

A body declared small (up to `WHOLE_BODY_BYTES`) is read in one call; any other comes
chunk by chunk, and `read_request_body` reads it whole before forwarding up to
BANDIT_BUFFER_BODY_BYTES (such a body can be mirrored to shadow arms and sent again to
another arm), and streams a larger one (`StreamedBody`), as under ASGI.

What RSGI 1.6 (granian 2.8) cannot carry, and uvicorn can (docs/design.md lists them):
- a request header whose value is not visible ASCII: granian leaves it out of the scope;
- a chunked upload the client broke off: granian ends the body as if it were complete
  (a declared length is checked here, so only chunked uploads are affected);
- an answer the upstream broke off mid-stream: granian ends the stream cleanly, so a
  chunked answer looks complete to the client;
- back-pressure: a streamed answer is queued in memory as fast as the upstream sends it,
  however slowly the client reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import quote

from proxy.app import ProxyApp
from proxy.clients.base import Headers
from proxy.exceptions import ClientDisconnected
from proxy.headers import request_headers

# Characters of a path (RFC 3986 pchar and "/") that stand for themselves.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"
#: Bodies declared up to this size are read in one call rather than chunk by chunk.
WHOLE_BODY_BYTES = 64 * 1024
#: What `drain_body` reads at most of a body an answer left unread.
DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_S = 5.0


class RsgiStream(Protocol):
    async def send_bytes(self, data: bytes) -> None: ...


class RsgiProtocol(Protocol):
    """What the proxy uses of granian's `RSGIHTTPProtocol`."""

    async def __call__(self) -> bytes: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> RsgiStream: ...


def _text(value: bytes) -> str:
    """A header value as granian writes it back (as UTF-8): UTF-8 bytes stay the same bytes;
    other bytes above 0x7f cannot, and go out UTF-8 encoded."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def text_headers(headers: Headers) -> list[tuple[str, str]]:
    """Header bytes as RSGI wants them: names are ASCII; values see `_text`."""
    return [
        (name.decode("latin-1"), value.decode("latin-1") if value.isascii() else _text(value))
        for name, value in headers
    ]


class RsgiResponder:
    """A `proxy.app.Responder` over an RSGI protocol."""

    __slots__ = ("_protocol", "_stream")

    def __init__(self, protocol: RsgiProtocol) -> None:
        self._protocol = protocol
        self._stream: RsgiStream | None = None

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self._protocol.response_bytes(status, text_headers(headers), body)

    async def start(self, status: int, headers: Headers) -> None:
        self._stream = self._protocol.response_stream(status, text_headers(headers))

    async def chunk(self, data: bytes) -> None:
        assert self._stream is not None
        try:
            await self._stream.send_bytes(data)
        except RuntimeError as error:  # granian's RSGIProtocolClosed: the client went away
            raise ClientDisconnected("the client went away mid-answer") from error

    async def end(self) -> None:
        """Let granian end the body: it does so once the stream object is gone."""
        self._stream = None


class RsgiBody:
    """ASGI-shaped `receive` over an RSGI request body, so `read_request_body` serves both."""

    __slots__ = ("_chunks", "_declared", "_done", "_none_yet", "_protocol", "_received")

    @property
    def reads_whole(self) -> bool:
        """Does the first read take all of the body in one call (one declared small)?"""
        return self._declared is not None and self._declared <= WHOLE_BODY_BYTES

    def __init__(self, protocol: RsgiProtocol, declared: bytes | None, has_body: bool) -> None:
        """`declared`: the Content-Length; `has_body`: False when there is neither that nor a
        Transfer-Encoding (a GET, say), so nothing is read at all."""
        self._protocol = protocol
        self._declared = int(declared) if declared is not None and declared.isdigit() else None
        self._chunks: AsyncIterator[bytes] | None = None
        self._done = not has_body
        # No body at all: the first receive says so without a read.
        self._none_yet = not has_body
        self._received = 0

    async def __call__(self) -> dict[str, Any]:
        if self._none_yet:
            self._none_yet = False
            return {"type": "http.request", "body": b"", "more_body": False}
        if self._done:
            return {"type": "http.disconnect"}
        try:
            if self._chunks is None:
                return await self._first()
            chunk = await self._next()
        except (RuntimeError, ClientDisconnected):  # granian's RSGIProtocolError/Closed, or a short body
            self._done = True
            return {"type": "http.disconnect"}
        if chunk is None:
            self._done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _next(self) -> bytes | None:
        """The next non-empty chunk; None at the end. A declared body that ends short was cut
        off: granian ends it as if it were complete, so the count tells."""
        assert self._chunks is not None
        while True:
            try:
                # Not anext(…, default): its wrapper around the awaitable granian returns
                # crashes the worker (a segfault, seen with granian 2.8.9).
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                if self._declared is not None and self._received < self._declared:
                    raise ClientDisconnected("the client went away mid-upload") from None
                return None
            if chunk:  # granian yields empty chunks before the end
                self._received += len(chunk)
                return chunk

    async def _first(self) -> dict[str, Any]:
        """The whole body if it is declared small, read in one call; else its first chunk
        (`read_request_body` decides how much more to read before forwarding)."""
        if self._declared is not None and self._declared <= WHOLE_BODY_BYTES:
            self._done = True
            body = await self._protocol()
            if len(body) < self._declared:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        self._chunks = self._protocol.__aiter__()
        chunk = await self._next()
        if chunk is None:
            self._done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def drain(self) -> None:
        """Read and drop what the answer left of the body (see `drain_body`)."""
        if self._done:
            return
        self._done = True
        if self._declared is None or self._declared - self._received <= DRAIN_BYTES:
            await drain_body(self._chunks or self._protocol.__aiter__())


async def drain_body(chunks: AsyncIterator[bytes]) -> None:
    """Read and drop up to `DRAIN_BYTES` of a request body, for at most `DRAIN_S`.

    An answer that left the body unread (a 413, an error) would otherwise close a connection
    the client is still sending on, and the client would see a reset instead of the answer
    (what nginx's lingering close avoids). Bounded, so a client cannot keep a handler reading.
    """
    dropped = 0
    with contextlib.suppress(RuntimeError, TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            while dropped <= DRAIN_BYTES:
                try:
                    dropped += len(await chunks.__anext__())
                except StopAsyncIteration:
                    return


def raw_path(path: str) -> bytes:
    """The request path percent-encoded again: granian's RSGI scope carries it decoded.

    Whatever the client encoded that needs encoding comes back the same; what it encoded
    that needed none (a ``%2F``, a ``%41``) goes upstream as the character itself.
    """
    return quote(path, safe=_PATH_SAFE).encode("ascii")


async def serve_rsgi(proxy: ProxyApp, scope: Any, protocol: RsgiProtocol) -> None:
    """Answer one /invoke request that granian handed over through RSGI."""
    client_host = scope.client.rpartition(":")[0] or None
    incoming = request_headers(
        [(name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()],  # ASCII
        client_host.strip("[]") if client_host else None,
        scope.scheme,
    )
    headers = scope.headers
    has_body = incoming.content_length is not None or "transfer-encoding" in headers
    body = RsgiBody(protocol, incoming.content_length, has_body)
    await proxy.forward(
        RsgiResponder(protocol),
        scope.method,
        raw_path(scope.path),
        scope.query_string.encode("latin-1"),
        incoming,
        body,
        read_whole=body.reads_whole,
    )
    # A client that asked to be told before it sends (Expect: 100-continue) and was refused
    # sends nothing: waiting for its body would only hold the handler.
    if "expect" not in headers:
        await body.drain()
