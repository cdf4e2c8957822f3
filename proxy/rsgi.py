"""The proxy behind granian's RSGI interface: the same forwarding as the ASGI app, fewer layers.

RSGI (granian's own interface) hands over the request as a scope object and a protocol
whose methods write the answer, with no message dicts in between: measured in
BENCHMARKS.md, that is a third less CPU per proxied request than ASGI under uvicorn or
granian. Headers arrive as text; they are turned into bytes once, as ASGI gives them, so
everything past this module is the same for both interfaces.

The body is read whole when it is small (up to `WHOLE_BODY_BYTES`, declared or not): such
a body can be mirrored to shadow arms and sent again to another arm, as under ASGI where a
small body comes in one message. A larger one streams (`StreamedBody`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import quote

from proxy.app import ProxyApp
from proxy.clients.base import Headers
from proxy.headers import request_headers

# Characters of a path (RFC 3986 pchar and "/") that stand for themselves.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"
#: Bodies up to this size are read before an upstream connection is taken.
WHOLE_BODY_BYTES = 64 * 1024
#: After an answer that left the request body unread (a 413, an error), at most this much of
#: it, for at most this long, is read and dropped: a client still sending when the connection
#: closed would get a reset instead of the answer (what nginx's lingering close avoids).
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


def text_headers(headers: Headers) -> list[tuple[str, str]]:
    """Header bytes as RSGI wants them: latin-1 maps each byte to one character and back."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


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
        await self._stream.send_bytes(data)

    async def end(self) -> None:
        """Nothing to send: granian ends the body when the stream's owner returns."""


class RsgiBody:
    """ASGI-shaped `receive` over an RSGI request body, so `read_request_body` serves both."""

    __slots__ = ("_chunks", "_declared", "_done", "_protocol")

    def __init__(self, protocol: RsgiProtocol, declared: bytes | None) -> None:
        self._protocol = protocol
        self._declared = int(declared) if declared is not None and declared.isdigit() else None
        self._chunks: AsyncIterator[bytes] | None = None
        self._done = False

    async def __call__(self) -> dict[str, Any]:
        if self._done:
            return {"type": "http.disconnect"}
        try:
            if self._chunks is None:
                return await self._first()
            chunk = await _next_chunk(self._chunks)
        except RuntimeError:  # granian's RSGIProtocolError/Closed: the client went away mid-body
            self._done = True
            return {"type": "http.disconnect"}
        if chunk is None:
            self._done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def drain(self) -> None:
        """Read and drop what is left of the body, within `DRAIN_BYTES` and `DRAIN_S`."""
        if self._done:
            return
        self._done = True
        if self._chunks is None:
            self._chunks = self._protocol.__aiter__()
        dropped = 0
        with contextlib.suppress(RuntimeError, TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                while dropped <= DRAIN_BYTES and (chunk := await _next_chunk(self._chunks)) is not None:
                    dropped += len(chunk)

    async def _first(self) -> dict[str, Any]:
        """The whole body if it is small, else what came of it up to the limit."""
        if self._declared is not None and self._declared <= WHOLE_BODY_BYTES:
            self._done = True
            return {"type": "http.request", "body": await self._protocol(), "more_body": False}
        self._chunks = self._protocol.__aiter__()
        parts: list[bytes] = []
        size = 0
        while size <= WHOLE_BODY_BYTES:
            chunk = await _next_chunk(self._chunks)
            if chunk is None:
                self._done = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            parts.append(chunk)
            size += len(chunk)
        return {"type": "http.request", "body": b"".join(parts), "more_body": True}


def raw_path(path: str) -> bytes:
    """The request path percent-encoded again: granian's RSGI scope carries it decoded.

    Whatever the client encoded that needs encoding comes back the same; what it encoded
    that needed none (a ``%2F``, a ``%41``) goes upstream as the character itself.
    """
    return quote(path, safe=_PATH_SAFE).encode("ascii")


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next chunk, None at the end. Not anext(…, default): its wrapper around the awaitable
    granian returns crashes the worker (a segfault, seen with granian 2.8.9)."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


async def serve_rsgi(proxy: ProxyApp, scope: Any, protocol: RsgiProtocol) -> None:
    """Answer one /invoke request that granian handed over through RSGI."""
    client_host = scope.client.rpartition(":")[0] or None
    incoming = request_headers(
        [(name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()],
        client_host.strip("[]") if client_host else None,
        scope.scheme,
    )
    body = RsgiBody(protocol, incoming.content_length)
    await proxy.forward(
        RsgiResponder(protocol),
        scope.method,
        raw_path(scope.path),
        scope.query_string.encode("latin-1"),
        incoming,
        body,
    )
    await body.drain()
