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
class HeadLimits:
    """What one request head may cost (BANDIT_MAX_HEADER_BYTES, BANDIT_MAX_HEADERS, BANDIT_HEADER_TIMEOUT)."""

    max_bytes: int
    max_headers: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s)


def limited_protocol(limits: HeadLimits) -> functools.partial[LimitedHttpToolsProtocol]:
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
        limits: HeadLimits,
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

    # -- the connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # From the start, so a connection that never sends a byte is closed too: uvicorn's own
        # keep-alive timeout only runs after a response.
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

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
            self._feed(piece)
            if self.transport.is_closing():
                return  # refused: what follows is not parsed
        # A head has begun and is not complete (or only blank lines came): it is timed from now,
        # the tick its first byte arrived in. Most heads complete in the piece they begin in, and
        # so cost no timer. While a response is being written, uvicorn's keep-alive timeout,
        # armed when it is done, bounds the wait instead.
        if self._awaiting_head and self._head_timer is None and not self._response_pending():
            self._start_head_timer()

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
        if self._head_began_mid_piece and self._parsed_head_size() > self.limits.max_bytes:
            self._refuse_head_size()
            raise _StopParsing
        # llhttp sets this for Connection: upgrade with an Upgrade header, and for CONNECT.
        if self.parser.should_upgrade():
            self._refuse(HTTPStatus.BAD_REQUEST, self._upgrade_refusal())
            raise _StopParsing
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    # -- refusals ------------------------------------------------------------------------------
    def _parsed_head_size(self) -> int:
        """At least the head's size: its URL, and each header with its ": " and CRLF."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse_head_size(self) -> None:
        self._refuse(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"request head exceeds {self.limits.max_bytes} bytes (BANDIT_MAX_HEADER_BYTES)",
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
        client = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
        self.logger.warning("%sRefused a request: %d %s", client, status, detail)
        # While an earlier (pipelined) request's response is being written, an answer cannot be put
        # in the middle of it: that connection is only closed.
        if not self._response_pending():
            self.transport.write(_refusal(status, detail, self.server_state.default_headers))
        self.transport.close()


def _refusal(status: HTTPStatus, detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The response: the API's error shape, with the headers uvicorn adds to every response."""
    body = json.dumps({"status_code": status.value, "detail": detail}).encode()
    head = [STATUS_LINE[status]]
    head.extend(name + b": " + value + b"\r\n" for name, value in default_headers)
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join([*head, body])
