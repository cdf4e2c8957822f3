"""The client's request body: read whole before any upstream is asked when it is small,
streamed when it is not, and never waited on for longer than the body timeouts allow.

Reading a small body first means a client that uploads slowly holds only its own
connection to the proxy, never a connection to an upstream (the pool every other request
needs). A larger body streams, so it is not held in memory; those are the requests the
per-arm cap on streamed uploads (`proxy.admission`) is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

from proxy.exceptions import BodyTimeout, BodyTooLarge, ClientDisconnected

Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyLimits(NamedTuple):
    """How large a body may be, how much of it is read before forwarding, how slowly it may come."""

    max_bytes: int
    # Bodies up to this size are read whole before an upstream connection is taken.
    buffer_bytes: int
    # The longest pause between two pieces of a body, and the longest the whole body may take.
    idle_s: float
    total_s: float


class StreamedBody:
    """Reads body messages only as the upstream client asks for them.

    Nothing is held beyond the chunk in flight, so a 50 MB upload costs a few chunks of
    memory. The limits hold as bytes arrive; `started` tells whether any chunk has been
    handed on (after which the request cannot be replayed to another arm), and `fault`
    keeps the client's own failure (too large, too slow, gone), which the upstream client
    reports only as a failed request, so that it is not taken for the arm's.
    """

    def __init__(self, receive: Receive, first_chunk: bytes, limits: BodyLimits, deadline: float) -> None:
        self._receive = receive
        self._first = first_chunk
        self._limits = limits
        self._deadline = deadline
        self.size = len(first_chunk)
        self.started = False
        self.fault: BodyTooLarge | BodyTimeout | ClientDisconnected | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        if self._first:
            yield self._first
        while True:
            try:
                message = await _next_message(self._receive, self._limits, self._deadline)
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected("the client went away mid-upload")
                chunk = message.get("body", b"")
                self.size += len(chunk)
                if self.size > self._limits.max_bytes:
                    raise BodyTooLarge
            except (BodyTooLarge, BodyTimeout, ClientDisconnected) as fault:
                self.fault = fault
                raise
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


async def _next_message(receive: Receive, limits: BodyLimits, deadline: float) -> dict[str, Any]:
    """The next body message, within the idle timeout and the whole body's deadline."""
    loop = asyncio.get_running_loop()
    idle_until = loop.time() + limits.idle_s
    try:
        async with asyncio.timeout_at(min(idle_until, deadline)):
            return await receive()
    except TimeoutError:
        raise BodyTimeout.past(limits.idle_s, limits.total_s, whole=loop.time() >= deadline) from None


async def read_request_body(receive: Receive, limits: BodyLimits, declared: int | None) -> bytes | StreamedBody:
    """The whole body when it fits `limits.buffer_bytes` (and `declared`, the Content-Length,
    does not say otherwise), else a stream of it that starts with what was read so far."""
    deadline = asyncio.get_running_loop().time() + limits.total_s
    message = await _next_message(receive, limits, deadline)
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("the client went away before sending its body")
    chunk: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(chunk) > limits.max_bytes:
            raise BodyTooLarge
        return chunk
    if declared is not None and declared > limits.buffer_bytes:
        # Too large to hold: it streams from the start, under the cap on streamed uploads.
        return StreamedBody(receive, chunk, limits, deadline)
    parts = [chunk]
    size = len(chunk)
    while size <= limits.buffer_bytes:
        message = await _next_message(receive, limits, deadline)
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client went away while sending its body")
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            if size > limits.max_bytes:
                raise BodyTooLarge
            return b"".join(parts)
    # A body of no declared length that outgrew the buffer: on as a stream.
    return StreamedBody(receive, b"".join(parts), limits, deadline)
