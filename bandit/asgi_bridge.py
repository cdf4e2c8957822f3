"""An ASGI app (Litestar) served through granian's RSGI interface, beside the proxy's own RSGI path.

Granian's RSGI objects are typed `Any` here: they are granian's (Rust) classes, described in
its docs and in `proxy.rsgi.RsgiProtocol`.

Granian runs one interface per server. The proxy is fastest on RSGI (BENCHMARKS.md), while
the API and dashboard are a Litestar app, which speaks ASGI: this module carries ASGI's
HTTP messages over an RSGI protocol, and runs the app's lifespan with granian's own
`LifespanProtocol` when a worker starts and stops. Only HTTP: the service serves no
WebSocket (granian runs with them off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.app import error_answer
from proxy.exceptions import BodyTimeout
from proxy.request_body import BodyLimits
from proxy.rsgi import RsgiResponder, drain_body, raw_path, text_headers

AsgiApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]], Any]


def asgi_scope(scope: Any) -> dict[str, Any]:
    """The ASGI HTTP scope of an RSGI scope."""
    path = scope.path  # decoded already, as ASGI's `path` is
    host, _, port = scope.client.rpartition(":")
    server_host, _, server_port = scope.server.rpartition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.0" if scope.http_version == "1" else scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": path,
        "raw_path": raw_path(path),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()],
        "client": (host.strip("[]"), int(port)) if port.isdigit() else None,
        "server": (server_host.strip("[]"), int(server_port)) if server_port.isdigit() else None,
        "state": {},
    }


class _Exchange:
    """One request's receive and send, ASGI-shaped, over the RSGI protocol."""

    def __init__(self, protocol: Any, limits: BodyLimits) -> None:
        self._protocol = protocol
        self._chunks = protocol.__aiter__()
        self._body_done = False
        self._status = 500
        self._headers: list[tuple[str, str]] = []
        self._stream: Any = None
        self._limits = limits
        self._deadline = asyncio.get_running_loop().time() + limits.total_s
        # Set once the bridge answered by itself (a 408): whatever the app sends after is dropped.
        self._answered = False

    async def receive(self) -> dict[str, Any]:
        if self._body_done:
            # ASGI apps wait on this to see a client leave (the dashboard's event stream does).
            await self._protocol.client_disconnect()
            return {"type": "http.disconnect"}
        try:
            # granian times no body: a pause past the idle timeout, or a body slower in all than
            # the body timeout, is answered 408 here, and the app is told the client left.
            idle_until = asyncio.get_running_loop().time() + self._limits.idle_s
            async with asyncio.timeout_at(min(idle_until, self._deadline)):
                # Not anext(…, default): its wrapper around the awaitable granian returns crashes
                # the worker (a segfault, seen with granian 2.8.9).
                chunk = await self._chunks.__anext__()
        except TimeoutError:
            self._body_done = True
            await self._answer_timeout(idle_until >= self._deadline)
            return {"type": "http.disconnect"}
        except StopAsyncIteration:
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except RuntimeError:  # granian's RSGIProtocolError/Closed: the client went away
            self._body_done = True
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _answer_timeout(self, whole: bool) -> None:
        if self._stream is not None:
            return  # the answer has begun: the app ends it
        detail = str(BodyTimeout.past(self._limits.idle_s, self._limits.total_s, whole=whole))
        await error_answer(RsgiResponder(self._protocol), 408, detail, connection="close")
        self._answered = True

    async def drain(self) -> None:
        """Drop what the app left of the body (a 413, say); see `proxy.rsgi.drain_body`."""
        # The answer is complete: granian ends a streamed one once its stream object is gone.
        self._stream = None
        if not self._body_done:
            self._body_done = True
            await drain_body(self._chunks)

    async def send(self, message: dict[str, Any]) -> None:
        if self._answered:
            return
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = text_headers(message["headers"])
            return
        if kind != "http.response.body":
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self._stream is None and not more:
            self._protocol.response_bytes(self._status, self._headers, body)
            return
        if self._stream is None:
            self._stream = self._protocol.response_stream(self._status, self._headers)
        if body:
            await self._stream.send_bytes(body)


async def serve_asgi(app: AsgiApp, scope: Any, protocol: Any, limits: BodyLimits) -> None:
    """Answer one RSGI request with `app`, its body read within `limits`' timeouts."""
    exchange = _Exchange(protocol, limits)  # granian answers 500 itself if the app never does
    await app(asgi_scope(scope), exchange.receive, exchange.send)
    if "expect" not in scope.headers:  # refused before it sent, such a client sends nothing
        await exchange.drain()


class Lifespan:
    """The app's ASGI lifespan, started and stopped on granian's worker loop."""

    def __init__(self, app: AsgiApp) -> None:
        from granian.asgi import LifespanProtocol

        self._handler = LifespanProtocol(app)  # type: ignore[no-untyped-call]

    def startup(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self._handler.startup())  # type: ignore[no-untyped-call]
        if self._handler.interrupt:
            raise RuntimeError("the app's lifespan startup failed") from self._handler.exc

    def shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self._handler.shutdown())  # type: ignore[no-untyped-call]
