"""uvicorn's httptools protocol with limits on the request head, and no protocol switches.

uvicorn bounds neither the size of a request head nor the time it may take to arrive: httptools
keeps a header however long, re-joining it as its pieces come in, and a connection may send a head
slowly, or nothing, for as long as it likes. And a request asking to switch to a protocol uvicorn
does not run (h2c, say) is handed to the app as plain HTTP while the parser goes on after the head:
the bytes of its body are then read as a request of their own (uvicorn issue #2722). A WebSocket
upgrade would reach the app, which serves no WebSockets.

This protocol answers those requests itself, in the API's error shape, before the app sees them
and before the parser is fed more than the head limit, and closes the connection: 431 for a head
too large or with too many headers, 408 for a head that takes too long, 400 for an upgrade.

Bodies are timed here as well, for every route: a body that pauses past BANDIT_BODY_IDLE_TIMEOUT
or takes longer in all than BANDIT_BODY_TIMEOUT gets 408 and a closed connection (the proxy
times its own reads the same way, a little sooner, and answers first on /invoke); so does one
that the app answered without reading and the client goes on sending for longer than the head
timeout (uvicorn would read and drop it for as long as it trickles in). Chunked trailers, which
httptools also re-joins without a bound, count against the head limit.

And a proxied request (/invoke/) whose client goes away before its answer is done is cancelled:
uvicorn would let it wait for the upstream, holding one of its arm's slots and an upstream
connection for up to the read timeout, for a client that is gone.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from bandit.core.settings import Settings


@dataclass(frozen=True)
class RequestLimits:
    """What one request's head and body may cost in size and time (the BANDIT_* settings named)."""

    max_bytes: int  # BANDIT_MAX_HEADER_BYTES, also for chunked trailers
    max_headers: int  # BANDIT_MAX_HEADERS
    timeout_s: float  # BANDIT_HEADER_TIMEOUT, also for a body the app left unread
    body_idle_s: float  # BANDIT_BODY_IDLE_TIMEOUT
    body_total_s: float  # BANDIT_BODY_TIMEOUT

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            settings.max_header_bytes,
            settings.max_headers,
            settings.header_timeout_s,
            settings.body_idle_timeout_s,
            settings.body_timeout_s,
        )


#: The protocol's body timeouts fire this much after the app's own: on /invoke the proxy answers
#: first, with the same 408, and counts the request; here is the backstop for every other route.
BODY_TIMEOUT_GRACE_S = 0.5


def limited_protocol(limits: RequestLimits) -> functools.partial[LimitedHttpToolsProtocol]:
    """The protocol for uvicorn's `http=`, with these limits.

    uvicorn keeps it in its Config, which it pickles to every worker process it spawns, so each
    worker gets the limits with it (a class attribute set before `uvicorn.run` would be lost to
    the fresh import in a spawned worker).
    """
    return functools.partial(LimitedHttpToolsProtocol, limits=limits)


class _StopParsing(Exception):
    """Raised from a parser callback once the request is refused, so llhttp stops at that byte."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses oversized, slow and upgrading request heads (module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: RequestLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        # True from the connection's start, or the end of a message, until a head is complete:
        # what arrives then is head; what arrives after it, until the message ends, is body.
        self._awaiting_head = True
        # True once the parser has seen the first byte of the head it awaits.
        self._head_begun = False
        # Bytes of the pieces fed while a head was awaited, since the last head completed: all of
        # them head, as a piece is cut at what the limit leaves. So the parser is never fed more
        # of a head than the limit, however much of it the client sends.
        self._head_bytes_received = 0
        # A head begun inside a piece, after a body or another head (pipelined), has a first part
        # that count missed: its size is summed from what the parser reports when it completes.
        self._piece_starts_head = False
        self._head_began_mid_piece = False
        self._head_timer: asyncio.TimerHandle | None = None
        # The body in progress: when it began and last brought bytes (loop time), the timer that
        # judges it, and the bytes fed since its last data (trailers and chunk extensions).
        self._body_began_at = 0.0
        self._body_last_at = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        self._fed_since_body_data = 0
        # Set when the response is done before the body is: the body must end by then.
        self._unread_body_until: float | None = None
        # The task running this connection's request, and whether this protocol cancelled it.
        self._request_task: asyncio.Task[Any] | None = None
        self._cancelled_for_leaving = False
        self.app = self._tracked(self.app)

    # -- the connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # From the start, so a connection that never sends a byte is closed too: uvicorn's own
        # keep-alive timeout only runs after a response.
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        cycle, task = self.cycle, self._request_task
        # Proxied requests only: what the API does (a reward being counted) runs to its end.
        proxied = cycle is not None and cycle.scope["path"].startswith("/invoke/")
        if proxied and task is not None and not cycle.response_complete:
            self._cancelled_for_leaving = True
            task.cancel()
        super().connection_lost(exc)

    def _tracked(self, app: Any) -> Any:
        """`app`, with the task running each request kept, so that `connection_lost` can cancel it."""

        async def run(scope: Any, receive: Any, send: Any) -> None:
            task = self._request_task = asyncio.current_task()
            try:
                await app(scope, receive, send)
            except asyncio.CancelledError:
                if not self._cancelled_for_leaving or task is None:
                    raise
                # Cancelled because its client left: nothing to answer, nothing to log.
                task.uncancel()
            finally:
                self._request_task = None

        return run

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused (or finished): nothing after it may be parsed as a request
        self._unset_keepalive_if_required()
        while data:
            if self._awaiting_head:
                budget = self.limits.max_bytes - self._head_bytes_received
                if budget <= 0:
                    self._refuse_head_size()
                    return
                self._piece_starts_head = not self._head_begun
                # Slicing bytes copies nothing when the piece fits (the usual case).
                piece, data = data[:budget], data[budget:]
                self._head_bytes_received += len(piece)
            else:
                self._piece_starts_head = False
                piece, data = data, b""
                self._fed_since_body_data += len(piece)
            self._feed(piece)
            if self.transport.is_closing():
                return  # refused: what follows is not parsed
            if self._fed_since_body_data > self.limits.max_bytes and not self._awaiting_head:
                # Past a piece of body data only framing should come: these are trailers or extensions.
                self._refuse_head_size("request trailers exceed")
                return
        # A head has begun and is not complete (or only blank lines came): it is timed from now,
        # the tick its first byte arrived in. Most heads complete in the piece they begin in, and
        # so cost no timer. While a response is being written, uvicorn's keep-alive timeout,
        # armed when it is done, bounds the wait instead.
        if self._awaiting_head and self._head_timer is None and not self._response_pending():
            self._start_head_timer()
        elif not self._awaiting_head and self._body_timer is None:
            # A body still to come (most arrive whole with their head, and cost no timer).
            self._body_timer = self.loop.call_later(self.limits.body_idle_s + BODY_TIMEOUT_GRACE_S, self._judge_body)

    def _response_pending(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _feed(self, piece: bytes) -> None:
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserError:
            if self.transport.is_closing():
                return  # one of our callbacks refused the request and stopped the parser
            # As uvicorn answers a request that is not HTTP.
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)

    # -- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        self._head_began_mid_piece = not self._piece_starts_head
        self._piece_starts_head = False

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > self.limits.max_headers:
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request has more than {self.limits.max_headers} headers (BANDIT_MAX_HEADERS)",
            )
            raise _StopParsing

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._awaiting_head = self._head_begun = False
        self._head_bytes_received = 0
        self._fed_since_body_data = 0
        self._body_began_at = self._body_last_at = self.loop.time()
        self._unread_body_until = None
        if self._head_began_mid_piece and self._parsed_head_size() > self.limits.max_bytes:
            self._refuse_head_size()
            raise _StopParsing
        # llhttp sets this for Connection: upgrade with an Upgrade header, and for CONNECT.
        if self.parser.should_upgrade():
            self._refuse(HTTPStatus.BAD_REQUEST, self._upgrade_refusal())
            raise _StopParsing
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_last_at = self.loop.time()
        self._fed_since_body_data = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        self._cancel_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if not self._awaiting_head and not self.transport.is_closing():
            # Answered before its body was read: uvicorn drops the rest as it comes, but only for
            # as long as a head may take, so a body trickled in after its answer holds nothing.
            self._unread_body_until = self.loop.time() + self.limits.timeout_s
        super().on_response_complete()

    # -- the body's timer ----------------------------------------------------------------------
    def _judge_body(self) -> None:
        """Fired a while after the body's last data: 408 (or a close) if it paused too long or took
        too long in all, else armed again for what is left."""
        self._body_timer = None
        if self.transport.is_closing() or self._awaiting_head:
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The app is not reading (a slow upstream downstream of it): the client is not late.
            self._body_last_at = now
        grace = BODY_TIMEOUT_GRACE_S
        idle_until = self._body_last_at + self.limits.body_idle_s + grace
        total_until = self._body_began_at + self.limits.body_total_s + grace
        until = min(idle_until, total_until, self._unread_body_until or total_until)
        if now < until:
            self._body_timer = self.loop.call_later(until - now, self._judge_body)
            return
        if self._unread_body_until is not None and now >= self._unread_body_until:
            self.transport.close()  # answered already: nothing more to say
            return
        if now >= total_until:
            detail = f"the request body took more than {self.limits.body_total_s:g} s to arrive (BANDIT_BODY_TIMEOUT)"
        else:
            detail = f"the request body paused for more than {self.limits.body_idle_s:g} s (BANDIT_BODY_IDLE_TIMEOUT)"
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, detail)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- refusals ------------------------------------------------------------------------------
    def _parsed_head_size(self) -> int:
        """At least the head's size: its URL, and each header with its ": " and CRLF."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse_head_size(self, what: str = "request head exceeds") -> None:
        self._refuse(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"{what} {self.limits.max_bytes} bytes (BANDIT_MAX_HEADER_BYTES)",
        )

    def _upgrade_refusal(self) -> str:
        if self.parser.get_method() == b"CONNECT":
            return "CONNECT is not served: this is a reverse proxy, not a tunnel"
        if any(name == b"upgrade" and b"websocket" in value.lower() for name, value in self.headers):
            return "WebSockets are not served"
        return "protocol upgrades are not performed (Upgrade is refused)"

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"request head not received within {self.limits.timeout_s:g} s (BANDIT_HEADER_TIMEOUT)",
            )
        else:
            # Nothing (or blank lines) was sent: there is no request to answer. Browsers open
            # connections ahead of need, so this is not worth a warning.
            self.transport.close()

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """Answer `status` with `detail`, log it, close the connection."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        client = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
        self.logger.warning("%sRefused a request: %d %s", client, status, detail)
        # While a response is being written (an earlier, pipelined request's, or this one's), an
        # answer cannot be put in the middle of it: that connection is only closed.
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_refusal(status, detail, self.server_state.default_headers))
        self.transport.close()


def _refusal(status: HTTPStatus, detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The response: the API's error shape, with the headers uvicorn adds to every response."""
    body = json.dumps({"status_code": status.value, "detail": detail}).encode()
    head = [STATUS_LINE[status]]
    head.extend(name + b": " + value + b"\r\n" for name, value in default_headers)
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join([*head, body])
